import type { RecordAdapter, VendorRecord } from '../record-adapter.js';
import { codeKey } from '../sync/normalize.js';
import { formatTidsbankenSince } from './client.js';
import { replaceFields } from './replace.js';
import { ProsjektRefSchema, ProsjektSchema } from './schemas.js';

// Prosjekt (`prosjekt/Prosjekt`): the project; its Id is a string (the project number) and
// the match key, compared as a code (trimmed, case-insensitive).

/** AnsvarligId holds an Ansatt's numeric Id; the engine carries ids as strings. */
function withNumericIds(fields: VendorRecord): VendorRecord {
  const value = fields.AnsvarligId;
  return typeof value === 'string' && /^\d{1,15}$/.test(value)
    ? { ...fields, AnsvarligId: Number(value) }
    : fields;
}

export const prosjektAdapter = {
  system: 'tidsbanken',
  type: 'prosjekt',
  label: 'Prosjekt',
  updatedAtField: 'SistEndretDato',
  keys: (r) => ({ email: null, nationalId: null, number: null, code: codeKey(r.Id) }),
  keyFields: { email: [], nationalId: [], number: [], code: ['Id'] },
  webhook: { full: ProsjektSchema, thin: ProsjektRefSchema, keyFields: ['Id'] },
  formatSince: formatTidsbankenSince,
  createBody: withNumericIds,
  connect: ({ tidsbanken: client }) =>
    client && {
      get: (ref, options) => client.getProsjekt(ref.id, options),
      listChangedSince: (since, options) => client.listProsjekterChangedSince(since, options),
      create: (body, options) => client.createProsjekt(body, options),
      update: (ref, fields, options) =>
        replaceFields(
          'Prosjekt',
          ref.id,
          withNumericIds(fields),
          options.known,
          () => client.getProsjekt(ref.id, options),
          (record) => client.updateProsjekt(record, options),
        ),
    },
} satisfies RecordAdapter;
