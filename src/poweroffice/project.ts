import type { RecordAdapter, VendorRecord } from '../record-adapter.js';
import { codeKey } from '../sync/normalize.js';
import { formatPowerOfficeSince } from './client.js';
import { toJsonPatch, toPostBody } from './fields.js';
import { PowerOfficeRefSchema, ProjectWebhookSchema } from './schemas.js';

// Project (`/Projects`). Its Code is the match key and the origin id of a project we create
// (it carries the Prosjekt's Id), so a create looks the code up first.

/** Fields holding another record's Id: int64 in the API, strings in the engine. */
const ID_FIELDS = ['CustomerId', 'ProjectManagerEmployeeId'] as const;

function withNumericIds(fields: VendorRecord): VendorRecord {
  const out = { ...fields };
  for (const name of ID_FIELDS) {
    const value = out[name];
    if (typeof value === 'string' && /^\d{1,15}$/.test(value)) out[name] = Number(value);
  }
  return out;
}

export const projectAdapter = {
  system: 'poweroffice',
  type: 'project',
  label: 'Project',
  updatedAtField: 'LastChangedDateTimeOffset',
  keys: (r) => ({ email: null, nationalId: null, number: null, code: codeKey(r.Code) }),
  keyFields: { email: [], nationalId: [], number: [], code: ['Code'] },
  webhook: { full: ProjectWebhookSchema, thin: PowerOfficeRefSchema, keyFields: ['Id'] },
  formatSince: formatPowerOfficeSince,
  createBody: (fields) => toPostBody(withNumericIds(fields)),
  connect: ({ poweroffice: client }) =>
    client && {
      get: (ref, options) => client.getProject(ref.id, options),
      listChangedSince: (since, options) => client.listProjectsChangedSince(since, options),
      create: (body, options) => client.createProject(body, options),
      update: async (ref, fields, options) => ({
        record: await client.patchProject(
          ref.id,
          toJsonPatch(withNumericIds(fields), options.known),
          options,
        ),
      }),
    },
} satisfies RecordAdapter;
