// `npm run lint` step: the repository must stand on its own. No tracked file may point at
// design notes or API write-ups that live outside it (a clone does not have them); point to
// docs/ (ARCHITECTURE.md, vendor-apis.md), to code, or to a vendor's public URL instead.
//
//   node scripts/check-self-contained.js [dir]
//
// In a git work tree it reads the tracked files (`git ls-files`); elsewhere (a test's temp
// dir) every file under `dir`. node_modules/ and .git/ are skipped, as are binary files.
// Exit 1 with one `file:line: text` per hit.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import process from 'node:process';

// Escaped, so this file's own source never matches.
const FORBIDDEN = [
  /\.\.\/shared\b/,
  /\/work\/shared\b/,
  /\bDESIGN\.md\b/,
  /\bSTYLE\.md\b/,
  /(?<![\w-])(?:apis\/)?(?:tidsbanken|poweroffice)\.md\b/,
  /openapi\.v2\.merged/,
];

const SKIP_DIRS = new Set(['node_modules', '.git']);

function trackedFiles(dir) {
  const git = spawnSync('git', ['ls-files', '-z'], { cwd: dir, encoding: 'utf8' });
  if (git.status !== 0) return undefined;
  return git.stdout
    .split('\0')
    .filter((f) => f !== '' && !f.split('/').some((part) => SKIP_DIRS.has(part)))
    .map((f) => join(dir, f));
}

function walk(dir) {
  const files = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (SKIP_DIRS.has(entry.name)) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) files.push(...walk(path));
    else if (entry.isFile()) files.push(path);
  }
  return files;
}

/** Every line of a file under `dir` that references something outside the repository. */
export function findOutsideReferences(dir) {
  const root = resolve(dir);
  const files = trackedFiles(root) ?? walk(root);
  const hits = [];
  for (const file of files) {
    let text;
    try {
      if (!statSync(file).isFile()) continue;
      text = readFileSync(file, 'utf8');
    } catch {
      continue; // deleted in the work tree but still tracked: nothing to read
    }
    if (text.includes('\0')) continue;
    text.split('\n').forEach((line, i) => {
      if (FORBIDDEN.some((re) => re.test(line))) {
        hits.push({ file: relative(root, file), line: i + 1, text: line.trim() });
      }
    });
  }
  return hits;
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  const hits = findOutsideReferences(process.argv[2] ?? process.cwd());
  for (const h of hits) process.stderr.write(`${h.file}:${h.line}: ${h.text}\n`);
  if (hits.length > 0) {
    process.stderr.write(
      `${hits.length} reference(s) to files outside the repository; point to docs/, code or a public URL.\n`,
    );
    process.exit(1);
  }
}
