// A V8 profile as a short Markdown summary, for bench/<bench>/profiles/ (the raw profiles are
// many MiB; these pages are what the README's reasoning links to).
//
//   npx tsx bench/lib/profile-summary.ts <file.cpuprofile|file.heapprofile> [--top 15] [--title …]
//     [--root <the checkout the service ran from; default the working directory>]
//
// .cpuprofile (node --cpu-prof): sampled time split into idle / GC / program / JavaScript and
// native code; the functions with the most self time; self time by module (a dependency's
// package, a node: internal area, a file of this repository); this repository's functions by
// total time (callees included, recursion counted once; src/ and migrations/).
// .heapprofile (bench/lib/heap-sampler.js or node --heap-prof): sampled bytes by allocation
// site (self), by module, and this repository's functions by bytes allocated in them and
// their callees.
import { readFile } from 'node:fs/promises';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface CpuNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: CpuNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

interface HeapNode {
  id: number;
  callFrame: CallFrame;
  selfSize: number;
  children: HeapNode[];
}

interface HeapProfile {
  head: HeapNode;
  /** Written by bench/lib/heap-sampler.js. */
  meta?: {
    mode: string;
    secondsAfterStart: number;
    rssMiB: number;
    heapUsedMiB: number;
    heapTotalMiB: number;
    externalMiB: number;
    arrayBuffersMiB: number;
    samplingInterval: number;
  };
}

/** A tree of call frames with a self cost per node (µs or bytes). */
interface Tree {
  frame: CallFrame;
  self: number;
  children: Tree[];
}

const SPECIAL = new Set(['(root)', '(program)', '(idle)', '(garbage collector)']);

/** The module a frame belongs to: a package, a node: area, or a file of this repository. */
function moduleOf(frame: CallFrame, root: string): string {
  const url = frame.url;
  if (url === '') return SPECIAL.has(frame.functionName) ? frame.functionName : '(V8 / native)';
  const modules = url.lastIndexOf('/node_modules/');
  if (modules >= 0) {
    const [scope, name] = url.slice(modules + '/node_modules/'.length).split('/');
    return scope!.startsWith('@') ? `${scope}/${name}` : scope!;
  }
  if (url.startsWith('node:')) return url.split('/').slice(0, 2).join('/');
  const path = url.startsWith('file://') ? fileURLToPath(url) : url;
  const inRepo = relative(root, path);
  if (!inRepo.startsWith('..')) return inRepo.replace(/^dist\//, '').replace(/\.[cm]?[jt]s$/, '');
  return path;
}

function label(frame: CallFrame, root: string): string {
  const name = frame.functionName === '' ? '(anonymous)' : frame.functionName;
  if (frame.url === '') return name;
  return `${name} · ${moduleOf(frame, root)}:${frame.lineNumber + 1}`;
}

const isOwn = (module: string) => /^(src|migrations)\//.test(module);

function cpuTree(profile: CpuProfile): Tree {
  const self = new Map<number, number>();
  // A sample's time is the gap until the next sample (the last one gets the mean gap).
  const n = profile.samples.length;
  const mean = n > 0 ? (profile.endTime - profile.startTime) / n : 0;
  for (let i = 0; i < n; i++) {
    const id = profile.samples[i]!;
    self.set(id, (self.get(id) ?? 0) + (i + 1 < n ? profile.timeDeltas[i + 1]! : mean));
  }
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const build = (node: CpuNode): Tree => ({
    frame: node.callFrame,
    self: self.get(node.id) ?? 0,
    children: (node.children ?? []).map((id) => build(byId.get(id)!)),
  });
  return build(profile.nodes[0]!);
}

function heapTree(node: HeapNode): Tree {
  return { frame: node.callFrame, self: node.selfSize, children: node.children.map(heapTree) };
}

function walk(tree: Tree, visit: (node: Tree, stack: Tree[]) => void, stack: Tree[] = []): void {
  visit(tree, stack);
  stack.push(tree);
  for (const child of tree.children) walk(child, visit, stack);
  stack.pop();
}

function totals(tree: Tree): Map<Tree, number> {
  const total = new Map<Tree, number>();
  const sum = (node: Tree): number => {
    const value = node.self + node.children.reduce((s, c) => s + sum(c), 0);
    total.set(node, value);
    return value;
  };
  sum(tree);
  return total;
}

interface Rows {
  self: Map<string, number>;
  byModule: Map<string, number>;
  ownTotal: Map<string, number>;
  all: number;
}

function aggregate(tree: Tree, root: string): Rows {
  const self = new Map<string, number>();
  const byModule = new Map<string, number>();
  const ownTotal = new Map<string, number>();
  const total = totals(tree);
  let all = 0;
  const add = (map: Map<string, number>, key: string, value: number) =>
    map.set(key, (map.get(key) ?? 0) + value);
  walk(tree, (node, stack) => {
    all += node.self;
    if (node.self > 0) {
      add(self, label(node.frame, root), node.self);
      add(byModule, moduleOf(node.frame, root), node.self);
    }
    const key = label(node.frame, root);
    if (
      isOwn(moduleOf(node.frame, root)) &&
      !stack.some((above) => label(above.frame, root) === key)
    ) {
      add(ownTotal, key, total.get(node)!);
    }
  });
  return { self, byModule, ownTotal, all };
}

function top(map: Map<string, number>, count: number): [string, number][] {
  return [...map].sort((a, b) => b[1] - a[1]).slice(0, count);
}

function mdTable(header: string[], rows: (string | number)[][]): string {
  const escape = (cell: string | number) => String(cell).replace(/\|/g, '\\|');
  return [
    `| ${header.join(' | ')} |`,
    `| ${header.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`,
    ...rows.map((row) => `| ${row.map(escape).join(' | ')} |`),
  ].join('\n');
}

const pct = (part: number, whole: number) =>
  whole > 0 ? `${((100 * part) / whole).toFixed(1)} %` : '-';

export async function summarizeProfile(
  file: string,
  options: { top?: number; title?: string; root?: string } = {},
): Promise<string> {
  const count = options.top ?? 15;
  const root = options.root ?? process.cwd();
  const json = JSON.parse(await readFile(file, 'utf8')) as CpuProfile | HeapProfile;
  const lines: string[] = [
    `# ${options.title ?? file.split('/').pop()!}`,
    '',
    'Modules are files of this repository (`src/…`), packages (`node_modules`) or Node areas ' +
      '(`node:…`); a line number is that of the file that ran (`dist/…js` when compiled).',
    '',
  ];
  if ('nodes' in json) {
    const rows = aggregate(cpuTree(json), root);
    const ms = (us: number) => (us / 1000).toFixed(0);
    const special = (name: string) => rows.byModule.get(name) ?? 0;
    const idle = special('(idle)');
    const busy = rows.all - idle;
    lines.push(
      `CPU profile (\`--cpu-prof\`, main thread): ${(rows.all / 1e6).toFixed(1)} s sampled, ` +
        `idle ${pct(idle, rows.all)}; of the ${(busy / 1e6).toFixed(1)} s busy: ` +
        `GC ${pct(special('(garbage collector)'), busy)}, ` +
        `(program) ${pct(special('(program)'), busy)} (V8 and native work outside JavaScript frames).`,
      '',
      `## Top ${count} functions by self time (share of busy time)`,
      '',
      mdTable(
        ['function · module:line', 'self ms', 'share'],
        top(new Map([...rows.self].filter(([k]) => k !== '(idle)')), count).map(([k, v]) => [
          k,
          ms(v),
          pct(v, busy),
        ]),
      ),
      '',
      `## Self time by module (top ${count})`,
      '',
      mdTable(
        ['module', 'self ms', 'share'],
        top(new Map([...rows.byModule].filter(([k]) => k !== '(idle)')), count).map(([k, v]) => [
          k,
          ms(v),
          pct(v, busy),
        ]),
      ),
      '',
      `## This repository's functions by total time, callees included (top ${count})`,
      '',
      mdTable(
        ['function · module:line', 'total ms', 'share'],
        top(rows.ownTotal, count).map(([k, v]) => [k, ms(v), pct(v, busy)]),
      ),
    );
  } else {
    const rows = aggregate(heapTree(json.head), root);
    const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
    const meta = json.meta;
    lines.push(
      `Sampling heap profile (${meta?.mode ?? 'node --heap-prof: alive at exit'}): ` +
        `${mib(rows.all)} MiB sampled` +
        (meta !== undefined
          ? `, taken ${meta.secondsAfterStart} s after the start at RSS ${meta.rssMiB} MiB ` +
            `(V8 heap ${meta.heapUsedMiB} MiB used of ${meta.heapTotalMiB}, ` +
            `external ${meta.externalMiB} MiB, array buffers ${meta.arrayBuffersMiB} MiB)`
          : '') +
        '. Sampled bytes are an estimate of the bytes allocated at each site (one sample per ' +
        `~${meta?.samplingInterval ?? 32768} bytes).`,
      '',
      `## Top ${count} allocation sites (self)`,
      '',
      mdTable(
        ['function · module:line', 'MiB', 'share'],
        top(rows.self, count).map(([k, v]) => [k, mib(v), pct(v, rows.all)]),
      ),
      '',
      `## By module (top ${count})`,
      '',
      mdTable(
        ['module', 'MiB', 'share'],
        top(rows.byModule, count).map(([k, v]) => [k, mib(v), pct(v, rows.all)]),
      ),
      '',
      `## This repository's functions, callees included (top ${count})`,
      '',
      mdTable(
        ['function · module:line', 'MiB', 'share'],
        top(rows.ownTotal, count).map(([k, v]) => [k, mib(v), pct(v, rows.all)]),
      ),
    );
  }
  return `${lines.join('\n')}\n`;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  const option = (name: string) => {
    const i = args.indexOf(name);
    if (i < 0) return undefined;
    const [, value] = args.splice(i, 2);
    return value;
  };
  const topCount = option('--top');
  const title = option('--title');
  const root = option('--root');
  const file = args[0];
  if (file === undefined) {
    process.stderr.write(
      'usage: profile-summary.ts <file.cpuprofile|file.heapprofile> [--top N] [--title T] [--root DIR]\n',
    );
    process.exit(2);
  }
  process.stdout.write(
    await summarizeProfile(file, {
      ...(topCount !== undefined ? { top: Number(topCount) } : {}),
      ...(title !== undefined ? { title } : {}),
      ...(root !== undefined ? { root } : {}),
    }),
  );
}
