import type { RecordAdapter } from '../record-adapter.js';
import { formatPowerOfficeSince } from './client.js';
import { toJsonPatch, toPostBody } from './fields.js';
import { numberedContactKeys } from './keys.js';
import { EmployeeWebhookSchema, PowerOfficeRefSchema } from './schemas.js';

// Employee (`/Employees`). Created with ExternalImportReference as its origin id.

export const employeeAdapter = {
  system: 'poweroffice',
  type: 'employee',
  label: 'Employee',
  updatedAtField: 'LastChangedDateTimeOffset',
  ...numberedContactKeys,
  webhook: { full: EmployeeWebhookSchema, thin: PowerOfficeRefSchema, keyFields: ['Id'] },
  formatSince: formatPowerOfficeSince,
  createBody: toPostBody,
  connect: ({ poweroffice: client }) =>
    client && {
      get: (ref, options) => client.getEmployee(ref.id, options),
      listChangedSince: (since, options) => client.listEmployeesChangedSince(since, options),
      create: (body, options) => client.createEmployee(body, options),
      update: async (ref, fields, options) => ({
        record: await client.patchEmployee(ref.id, toJsonPatch(fields, options.known), options),
      }),
    },
} satisfies RecordAdapter;
