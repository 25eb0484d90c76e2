// Renders the README's merge rules and field mappings from the flow tables in src/sync/flows.ts, so the
// README shows what the code does. `npx tsx scripts/generate-mapping-tables.ts` prints the
// markdown; `--write` replaces README.md's section between the markers below (and adds the
// section after "## Configuration" if it is missing). test/unit/readme-mappings.test.ts fails
// when the README and this output differ.

import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  FLOWS,
  MERGE_RULE_KEY,
  type FieldMapping,
  type FlowDefinition,
  type MergeRuleName,
  type RecordType,
} from '../src/sync/flows.js';
import { RECORD_ADAPTERS } from '../src/record-types.js';

export const MAPPINGS_START = '<!-- mappings:start -->';
export const MAPPINGS_END = '<!-- mappings:end -->';

const RULE_NOTE: Record<MergeRuleName, string> = {
  email: 'trimmed, case-insensitive',
  national_id: 'digits only; `"hidden"` never matches',
  number: 'as integers',
  code: 'trimmed, case-insensitive',
};

const code = (s: string) => `\`${s}\``;

function fieldsOf(type: RecordType, rule: MergeRuleName): string {
  const names = RECORD_ADAPTERS[type].keyFields[MERGE_RULE_KEY[rule]];
  return names.length === 0 ? '(none)' : names.map(code).join(' / ');
}

function notes(field: FieldMapping): string {
  const out: string[] = [];
  if (field.kind === 'email') out.push('compared case-insensitively');
  if (field.kind === 'date') out.push('compared as YYYY-MM-DD');
  if (field.kind === 'national_id') out.push('digits compared');
  if (field.invert) out.push('**inverted**');
  if (field.references !== undefined) {
    const ref = FLOWS.find((f) => f.id === field.references)!;
    out.push(
      `the ${RECORD_ADAPTERS[ref.tidsbanken].label}'s / ${RECORD_ADAPTERS[ref.poweroffice].label}'s id, ` +
        `translated through ${code(ref.id)} links; waits while the record it names is unlinked`,
    );
  }
  if (field.direction === 'to-poweroffice') {
    out.push('one way');
    if (field.kind === 'national_id') {
      out.push('PowerOffice reads it as `"hidden"`: never a change, never written back');
    }
  }
  if (field.when !== undefined) {
    const values = field.when.oneOf.map((v) => (v === null ? 'empty' : code(v)));
    const list =
      values.length <= 1
        ? values.join('')
        : `${values.slice(0, -1).join(', ')} or ${values.at(-1)}`;
    out.push(`only when ${code(field.when.path)} is ${list}`);
  }
  return out.join('; ');
}

/** A markdown table padded the way prettier formats it. */
function table(header: string[], rows: string[][]): string {
  const width = (s: string) => [...s].length;
  const widths = header.map((h, i) => Math.max(3, width(h), ...rows.map((r) => width(r[i]!))));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => c + ' '.repeat(widths[i]! - width(c))).join(' | ')} |`;
  return [
    line(header),
    `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`,
    ...rows.map(line),
  ].join('\n');
}

/** How a record created in PowerOffice finds its way back to the Tidsbanken record. */
function createdNote(flow: FlowDefinition, tb: string, po: string): string {
  if (flow.powerofficeOriginField !== undefined) {
    return `Records created in PowerOffice carry ${code(flow.powerofficeOriginField)} = ${code(`${flow.originPrefix}<Id>`)}.`;
  }
  const [tbKey] = RECORD_ADAPTERS[flow.tidsbanken].keyFields.code;
  const [poKey] = RECORD_ADAPTERS[flow.poweroffice].keyFields.code;
  return (
    `A ${po} created from a ${tb} gets ${code(poKey!)} = ${code(tbKey!)}, a ${tb} created from a ${po} ` +
    `gets ${code(tbKey!)} = ${code(poKey!)} (set on create, never updated); a ${po} without ` +
    `${code(poKey!)} is never created in Tidsbanken.`
  );
}

function renderFlow(flow: FlowDefinition): string {
  const tb = RECORD_ADAPTERS[flow.tidsbanken].label;
  const po = RECORD_ADAPTERS[flow.poweroffice].label;
  const rules = flow.mergeRules.map(
    (rule) =>
      `${tb} ${fieldsOf(flow.tidsbanken, rule)} = ${po} ${fieldsOf(flow.poweroffice, rule)} (${RULE_NOTE[rule]})`,
  );
  const rows = flow.fields.map((f) => [
    code(f.tidsbanken),
    f.direction === 'both' ? '↔' : '→',
    code(f.poweroffice),
    f.kind,
    notes(f),
  ]);
  return [
    `### ${code(flow.id)}: ${tb} ↔ ${po}`,
    '',
    `Merge rule${rules.length > 1 ? 's (any one matching links them)' : ''}: ${rules.join('; or ')}.`,
    createdNote(flow, tb, po),
    '',
    table(['Tidsbanken', '↔/→', 'PowerOffice', 'kind', 'notes'], rows),
  ].join('\n');
}

/** The README's field mapping section (without the markers), from FLOWS. Pure. */
export function renderMappingTables(flows: readonly FlowDefinition[] = FLOWS): string {
  return [
    '_Generated from `src/sync/flows.ts` by `npx tsx scripts/generate-mapping-tables.ts --write`; ' +
      'a unit test fails when this section and the code differ._',
    '`↔` both directions, `→` Tidsbanken to PowerOffice only. Values are compared normalized: ' +
      '`""` equals empty, text trimmed.',
    '',
    flows.map(renderFlow).join('\n\n'),
  ].join('\n');
}

/** The text between the markers in `readme`, trimmed; undefined without the markers. */
export function mappingSectionOf(readme: string): string | undefined {
  const start = readme.indexOf(MAPPINGS_START);
  const end = readme.indexOf(MAPPINGS_END);
  if (start < 0 || end < start) return undefined;
  return readme.slice(start + MAPPINGS_START.length, end).trim();
}

/** `readme` with the section replaced (or added after the Configuration section). */
export function withMappingSection(readme: string, body: string): string {
  const block = `${MAPPINGS_START}\n\n${body}\n\n${MAPPINGS_END}`;
  const start = readme.indexOf(MAPPINGS_START);
  const end = readme.indexOf(MAPPINGS_END);
  if (start >= 0 && end > start) {
    return readme.slice(0, start) + block + readme.slice(end + MAPPINGS_END.length);
  }
  const config = readme.indexOf('\n## Configuration');
  if (config < 0) throw new Error('README.md has no "## Configuration" section');
  const next = readme.indexOf('\n## ', config + 1);
  const section = `\n## Field mappings\n\n${block}\n`;
  return next < 0
    ? `${readme.trimEnd()}\n${section}`
    : `${readme.slice(0, next)}${section}${readme.slice(next)}`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const body = renderMappingTables();
  if (process.argv.includes('--write')) {
    const path = fileURLToPath(new URL('../README.md', import.meta.url));
    const before = readFileSync(path, 'utf8');
    const after = withMappingSection(before, body);
    if (after !== before) {
      writeFileSync(`${path}.tmp`, after);
      renameSync(`${path}.tmp`, path);
    }
    console.log(after === before ? 'README.md is up to date' : 'README.md updated');
  } else {
    console.log(body);
  }
}
