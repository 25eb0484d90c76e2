import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

// scripts/check-self-contained.js (a step of `npm run lint`): run on a temp dir with a
// reference planted, it must fail and name the line. The planted names are assembled at run
// time so this file itself passes the check.
const script = join(import.meta.dirname, '../../scripts/check-self-contained.js');

function run(dir: string) {
  return spawnSync(process.execPath, [script, dir], { encoding: 'utf8' });
}

const planted = [
  ['..', 'shared', 'apis', 'x.md'].join('/'),
  ['DESIGN', 'md'].join('.') + ' §3',
  ['STYLE', 'md'].join('.'),
  'apis/' + ['tidsbanken', 'md'].join('.'),
  '(' + ['poweroffice', 'md'].join('.') + ' §1)',
  ['openapi', 'v2', 'merged', 'stianwe', 'yaml'].join('.'),
];

describe('check-self-contained', () => {
  const dirs: string[] = [];
  function tempRepo(files: Record<string, string>): string {
    const dir = mkdtempSync(join(tmpdir(), 'self-contained-'));
    dirs.push(dir);
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(join(dir, path, '..'), { recursive: true });
      writeFileSync(join(dir, path), text);
    }
    return dir;
  }
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('passes a tree whose references stay inside it', () => {
    const dir = tempRepo({
      'src/a.ts': '// See docs/ARCHITECTURE.md "Linking" and docs/vendor-apis.md.\n',
      'README.md': 'Public reference: <https://developer.poweroffice.net/>\n',
    });
    const result = run(dir);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
  });

  it.each(planted)('fails on a planted reference: %s', (reference) => {
    const dir = tempRepo({
      'src/ok.ts': 'export const ok = 1;\n',
      'src/sync/planted.ts': `const x = 1;\n// as ${reference} says\n`,
    });
    const result = run(dir);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(join('src', 'sync', 'planted.ts') + ':2:');
    expect(result.stderr).not.toContain('ok.ts');
  });

  it('skips node_modules and .git', () => {
    const reference = planted[1] ?? '';
    const dir = tempRepo({
      'node_modules/pkg/README.md': reference,
      '.git/notes': reference,
      'src/ok.ts': 'export const ok = 1;\n',
    });
    expect(run(dir).status).toBe(0);
  });
});
