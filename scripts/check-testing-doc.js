// `npm run lint` step: the coverage table of docs/testing.md names tests that exist, on the
// databases it says.
//
//   node scripts/check-testing-doc.js [docs/testing.md] [repository root]
//
// Each row of the table under "## Coverage" names test files in backticks (`x.test.ts` is under
// test/integration/, `unit/x.test.ts` under test/unit/) and, after a file, test or describe
// titles in double quotes. A title may shorten itself with "…" and stand for a family with a
// <placeholder>: every fragment between those must occur in that file. The last column says
// where the named tests run: "Both" (PGlite and PostgreSQL), "PostgreSQL" (only with
// DATABASE_URL) or "—" (unit tests, no database). A "Both" row must not point only at tests
// that run on PostgreSQL alone, and a "PostgreSQL" row must point at such tests.
// Exit 1 with one line per problem.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import process from 'node:process';

const docPath = resolve(process.argv[2] ?? 'docs/testing.md');
const root = resolve(process.argv[3] ?? '.');

const GATE = /\.(?:runIf\(process\.env\.DATABASE_URL\)|skipIf\(!process\.env\.DATABASE_URL\))/;

/**
 * Line ranges of a file that run only on PostgreSQL: from a gated describe or it to the line
 * where its parentheses close (titles in quotes are skipped, so their parentheses do not count).
 */
function gatedRanges(lines) {
  const ranges = [];
  for (let i = 0; i < lines.length; i++) {
    if (!GATE.test(lines[i])) continue;
    let depth = 0;
    let end = i;
    for (; end < lines.length; end++) {
      const code = lines[end].replace(/'(?:[^'\\]|\\.)*'|`(?:[^`\\]|\\.)*`|"(?:[^"\\]|\\.)*"/g, '');
      for (const ch of code) {
        if (ch === '(') depth++;
        else if (ch === ')') depth--;
      }
      if (depth <= 0 && end > i) break;
    }
    ranges.push([i, end]);
  }
  return ranges;
}

/** Lines where the file's tests (it, test, and their variants) begin. */
function testLines(lines) {
  const out = [];
  for (let i = 0; i < lines.length; i++) if (/^\s*(?:it|test)\b[.(]/.test(lines[i])) out.push(i);
  return out;
}

const problems = [];
const text = readFileSync(docPath, 'utf8');
const section = text.split(/^## Coverage.*$/m)[1];
if (section === undefined) problems.push(`${docPath}: no "## Coverage" section`);
const rows = (section ?? '')
  .split('\n')
  .filter((l) => l.startsWith('|') && !/^\|\s*-/.test(l))
  .slice(1); // the header row
if (section !== undefined && rows.length === 0) problems.push(`${docPath}: the table has no rows`);

for (const row of rows) {
  const cells = row.split('|').slice(1, -1);
  if (cells.length !== 3) {
    problems.push(`row with ${cells.length} cells: ${row.slice(0, 80)}`);
    continue;
  }
  const [promise, tests, database] = cells.map((c) => c.trim());
  const where = promise.slice(0, 60);
  if (!['Both', 'PostgreSQL', '—'].includes(database))
    problems.push(`"${where}": database "${database}" is not Both, PostgreSQL or —`);
  const named = [];
  let current;
  for (const token of tests.matchAll(/`([^`]+\.test\.ts)`|"([^"]+)"/g)) {
    if (token[1] !== undefined) {
      const rel = token[1].startsWith('unit/')
        ? join('test', token[1])
        : join('test', 'integration', token[1]);
      const path = join(root, rel);
      if (!existsSync(path)) {
        problems.push(`"${where}": ${rel} does not exist`);
        current = undefined;
        continue;
      }
      const lines = readFileSync(path, 'utf8').split('\n');
      current = { rel, lines, source: lines.join('\n'), titled: false };
      named.push(current);
      continue;
    }
    if (current === undefined) {
      problems.push(`"${where}": the title "${token[2]}" follows no test file`);
      continue;
    }
    current.titled = true;
    const fragments = token[2]
      .split(/…|<[^>]+>/)
      .map((f) => f.trim())
      .filter((f) => f.length >= 3);
    const missing = fragments.filter((f) => !current.source.includes(f));
    if (fragments.length === 0 || missing.length > 0) {
      problems.push(`"${where}": no test "${token[2]}" in ${current.rel}`);
      continue;
    }
    const at = current.lines.findIndex((l) => l.includes(fragments[0]));
    (current.at ??= []).push(at);
  }
  if (named.length === 0) problems.push(`"${where}": names no test file`);
  if (database === '—') {
    for (const n of named)
      if (!n.rel.startsWith(join('test', 'unit')))
        problems.push(`"${where}": ${n.rel} needs a database, but the row says —`);
    continue;
  }
  // Where each named test runs: the titled ones by their line, an untitled file by all of its tests.
  const gatedOnly = named.flatMap((n) => {
    const ranges = gatedRanges(n.lines);
    const gated = (line) => ranges.some(([from, to]) => line >= from && line <= to);
    const lines = n.titled ? (n.at ?? []) : testLines(n.lines);
    return lines.map((l) => gated(l));
  });
  if (database === 'Both' && gatedOnly.length > 0 && gatedOnly.every((g) => g))
    problems.push(`"${where}": says Both, but every test it names runs on PostgreSQL only`);
  if (database === 'PostgreSQL' && gatedOnly.some((g) => !g))
    problems.push(`"${where}": says PostgreSQL, but a test it names runs on PGlite too`);
}

if (problems.length > 0) {
  for (const p of problems) process.stderr.write(`docs/testing.md: ${p}\n`);
  process.exit(1);
}
