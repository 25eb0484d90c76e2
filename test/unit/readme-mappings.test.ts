import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  mappingSectionOf,
  renderMappingTables,
  withMappingSection,
} from '../../scripts/generate-mapping-tables.js';
import { FLOWS } from '../../src/sync/flows.js';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

describe('README field mappings', () => {
  it('equal the generator output from src/sync/flows.ts (run the script with --write to update)', () => {
    expect(mappingSectionOf(readme)).toBe(renderMappingTables());
  });

  it('sit under a "## Field mappings" heading', () => {
    expect(readme).toMatch(/## Field mappings\n\n<!-- mappings:start -->/);
  });

  it('show one table row per mapped field of every flow', () => {
    const out = renderMappingTables();
    for (const flow of FLOWS) {
      expect(out).toContain(`### \`${flow.id}\``);
      for (const f of flow.fields) {
        expect(out).toMatch(
          new RegExp(
            `\\| \`${f.tidsbanken}\` +\\| [↔→] +\\| \`${f.poweroffice.replace('.', '\\.')}\``,
          ),
        );
      }
    }
  });

  it('name the inverted, one-way and conditional mappings and the merge rules', () => {
    const out = renderMappingTables();
    expect(out).toMatch(/\| `Aktiv` +\| ↔ +\| `IsArchived` +\| boolean +\| \*\*inverted\*\*/);
    expect(out).toMatch(/\| `Personnummer` +\| → +\| `NationalIdNumber` .*"hidden"/);
    expect(out).toMatch(
      /\| `Organisasjonsnummer` +\| ↔ +\| `OrganizationNumber` .*only when `MailAddress.CountryCode` is `NO` or empty/,
    );
    expect(out).toContain('Ansatt `Id` = Employee `Number`');
    expect(out).toContain('Kunde `Epost` = Customer `EmailAddress`');
    expect(out).toContain('Ansatt `Personnummer` = ContactPerson `SocialSecurityNumber`');
  });

  it('follow a change in the flow data (the README cannot drift unnoticed)', () => {
    const changed = FLOWS.map((f) =>
      f.id === 'kunde-customer' ? { ...f, fields: f.fields.filter((m) => m.key !== 'Url') } : f,
    );
    expect(renderMappingTables(changed)).not.toBe(renderMappingTables());
    expect(renderMappingTables(changed)).not.toContain('`WebsiteUrl`');
  });

  it('replace only the marked section on write, and add it after Configuration when missing', () => {
    const doc = '# x\n\n## Configuration\n\n| a |\n| - |\n\n## Endpoints\n\ntext\n';
    const added = withMappingSection(doc, 'BODY');
    expect(added).toBe(
      '# x\n\n## Configuration\n\n| a |\n| - |\n\n## Field mappings\n\n' +
        '<!-- mappings:start -->\n\nBODY\n\n<!-- mappings:end -->\n\n## Endpoints\n\ntext\n',
    );
    const replaced = withMappingSection(added, 'NEW');
    expect(mappingSectionOf(replaced)).toBe('NEW');
    expect(replaced.replace('NEW', 'BODY')).toBe(added);
  });
});
