import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

// scripts/check-testing-doc.js (a step of `npm run lint`): the coverage table of
// docs/testing.md must name tests that exist, on the databases it says. Run on the real
// document it passes; run on a planted table in a temp repository it names every bad row.
const script = join(import.meta.dirname, '../../scripts/check-testing-doc.js');
const root = join(import.meta.dirname, '../..');

function run(doc: string, repo: string) {
  return spawnSync(process.execPath, [script, doc, repo], { encoding: 'utf8' });
}

const ANY_DB = `import { describe, it } from 'vitest';
describe('links', () => {
  it('links by e-mail (trimmed) and syncs both ways', () => {});
});
`;
const POSTGRES_ONLY = `import { describe, it } from 'vitest';
describe.runIf(process.env.DATABASE_URL)('two replicas', () => {
  it('hand over (mid-burst) without a double write', () => {});
});
`;

function table(rows: string[]): string {
  return [
    '# Testing',
    '',
    '## Coverage',
    '',
    '| Promise | Test | Database |',
    '| ------- | ---- | -------- |',
    ...rows,
    '',
  ].join('\n');
}

describe('check-testing-doc', () => {
  const dirs: string[] = [];
  function tempRepo(doc: string): { repo: string; doc: string } {
    const repo = mkdtempSync(join(tmpdir(), 'testing-doc-'));
    dirs.push(repo);
    mkdirSync(join(repo, 'test/integration'), { recursive: true });
    mkdirSync(join(repo, 'test/unit'), { recursive: true });
    writeFileSync(join(repo, 'test/integration/links.test.ts'), ANY_DB);
    writeFileSync(join(repo, 'test/integration/replicas.test.ts'), POSTGRES_ONLY);
    writeFileSync(join(repo, 'test/unit/diff.test.ts'), ANY_DB);
    writeFileSync(join(repo, 'testing.md'), doc);
    return { repo, doc: join(repo, 'testing.md') };
  }
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('passes docs/testing.md as it is', () => {
    const result = run(join(root, 'docs/testing.md'), root);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
  });

  it('passes rows whose files, titles and databases are right', () => {
    const { repo, doc } = tempRepo(
      table([
        '| a | `links.test.ts` "links by e-mail…syncs both ways" | Both |',
        '| b | `replicas.test.ts` "hand over (mid-burst)…" | PostgreSQL |',
        '| c | `unit/diff.test.ts` "links by <rule> (trimmed)…" | — |',
      ]),
    );
    const result = run(doc, repo);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
  });

  it.each([
    ['a missing file', '`gone.test.ts`', 'Both', 'gone.test.ts does not exist'],
    ['a missing title', '`links.test.ts` "links by phone…"', 'Both', 'no test "links by phone…"'],
    ['a PostgreSQL-only test said to run on both', '`replicas.test.ts`', 'Both', 'says Both'],
    [
      'a test on both said to be PostgreSQL-only',
      '`links.test.ts`',
      'PostgreSQL',
      'says PostgreSQL',
    ],
    ['an integration test said to need no database', '`links.test.ts`', '—', 'needs a database'],
    ['no test at all', 'by inspection', 'Both', 'names no test file'],
  ])('fails a row naming %s', (_what, tests, database, message) => {
    const { repo, doc } = tempRepo(
      table(['| fine | `links.test.ts` | Both |', `| planted | ${tests} | ${database} |`]),
    );
    const result = run(doc, repo);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('"planted"');
    expect(result.stderr).toContain(message);
    expect(result.stderr).not.toContain('"fine"');
  });
});
