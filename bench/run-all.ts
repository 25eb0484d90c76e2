// `npm run bench`: quick versions of every benchmark, one after another (they share 2 cores,
// so never in parallel), then one table of the headline numbers. Each bench writes its own
// last-result JSON; this script reads them back. Budget: about 5 minutes.
//   ingest     4 alternating rounds × 2 phases × 3 s, then 6 s at half rate
//   reconcile  2 000 records per type and side
//   sync       --quick (100 latency samples ×2, 200 paced changes, 50×10 coalesced ×2)
//   soak       --quick (45 s of edits with faults and kills)
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fmt, machine, table } from './lib/common.js';

interface Step {
  name: string;
  args: string[];
  env: Record<string, string>;
  result: string;
}

const STEPS: Step[] = [
  {
    name: 'ingest',
    args: ['bench/ingest/run.ts', '--rounds', '4', '--duration', '3', '--half-duration', '6'],
    env: {},
    result: 'bench/ingest/last-result.json',
  },
  {
    name: 'reconcile',
    args: ['bench/reconcile/run.ts'],
    env: { BENCH_RECORDS: '2000' },
    result: 'bench/reconcile/last-result.json',
  },
  {
    name: 'sync',
    args: ['bench/sync/run.ts', '--quick'],
    env: {},
    result: 'bench/sync/last-result-quick.json',
  },
  {
    name: 'soak',
    args: ['bench/soak/run.ts', '--quick'],
    env: {},
    result: 'bench/soak/last-result-quick.json',
  },
];

function run(step: Step): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn('node_modules/.bin/tsx', step.args, {
      env: { ...process.env, ...step.env },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    child.on('exit', (code) => resolve(code ?? 1));
  });
}

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

async function main(): Promise<void> {
  const started = Date.now();
  const rows: (string | number)[][] = [['bench', 'headline', 'value', 'target', 'exit']];
  for (const step of STEPS) {
    process.stderr.write(`\n=== ${step.name} ===\n`);
    const t0 = Date.now();
    const code = await run(step);
    const secs = Math.round((Date.now() - t0) / 1000);
    let r: Json;
    try {
      r = JSON.parse(await readFile(step.result, 'utf8')) as Json;
    } catch {
      rows.push([step.name, 'no result', '-', '-', code]);
      continue;
    }
    const exit = `${code} (${secs} s)`;
    if (step.name === 'ingest') {
      rows.push([step.name, 'ingest / baseline req/s', fmt(r.ratio, 2), '≥ 0.7', exit]);
      rows.push([step.name, 'p99 at half rate, ms', fmt(r.appHalf?.p99), '< 15', '']);
      rows.push([step.name, 'bare route p99 at that rate, ms', fmt(r.baselineHalf?.p99), '-', '']);
    } else if (step.name === 'reconcile') {
      rows.push([
        step.name,
        `${r.recordsPerSide}/side: wall s, records/s`,
        `${r.wallSeconds} s, ${r.recordsPerSecond}/s (${r.status})`,
        '-',
        exit,
      ]);
    } else if (step.name === 'sync') {
      const l = r.latency as Json | undefined;
      rows.push([
        step.name,
        'webhook→PATCH p50/p95 ms (seq; 20 conc)',
        l
          ? `${fmt(l.sequential.p50)}/${fmt(l.sequential.p95)}; ${fmt(l.concurrent.p50)}/${fmt(l.concurrent.p95)}`
          : 'failed',
        '-',
        exit,
      ]);
      rows.push([
        step.name,
        'pace ratio, 429s',
        r.pace ? `${fmt(r.pace.ratio, 3)}, ${r.pace.total429}` : 'failed',
        '≥ 0.95, 0',
        '',
      ]);
      rows.push([
        step.name,
        'PATCHes/record max (burst; interleaved)',
        `${r.coalesce?.perRecordMax ?? 'failed'}; ${r.coalesceInterleaved?.perRecordMax ?? 'failed'}`,
        '≤ 2',
        '',
      ]);
    } else {
      const c = r.counts as Json;
      rows.push([
        step.name,
        'changes/faults/restarts/writes',
        `${c.changes}/${c.faults}/${c.restarts}/${c.writes}`,
        '-',
        exit,
      ]);
      rows.push([
        step.name,
        'duplicates/lost/mismatched/dead',
        `${c.duplicates}/${c.lost}/${c.mismatched}/${c.deadCommands + c.deadEvents} → ${r.pass ? 'PASS' : 'FAIL'}`,
        `≤ restarts/0/0/0`,
        '',
      ]);
    }
  }
  const m = machine();
  process.stdout.write(`\n${table(rows)}\n`);
  process.stdout.write(
    `\nnproc ${m.nproc} · ${m.cpuModel} · ${m.memFree} · node ${m.node} · load ${m.loadAvg1m} · ${Math.round((Date.now() - started) / 1000)} s\n`,
  );
}

await main();
