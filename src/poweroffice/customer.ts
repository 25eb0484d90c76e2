import type { RecordAdapter } from '../record-adapter.js';
import { formatPowerOfficeSince } from './client.js';
import { toJsonPatch, toPostBody } from './fields.js';
import { numberedContactKeys } from './keys.js';
import { CustomerWebhookSchema, PowerOfficeRefSchema } from './schemas.js';

// Customer (`/Customers`). Created with ExternalImportReference as its origin id.

export const customerAdapter = {
  system: 'poweroffice',
  type: 'customer',
  label: 'Customer',
  updatedAtField: 'LastChangedDateTimeOffset',
  ...numberedContactKeys,
  webhook: { full: CustomerWebhookSchema, thin: PowerOfficeRefSchema, keyFields: ['Id'] },
  formatSince: formatPowerOfficeSince,
  createBody: toPostBody,
  connect: ({ poweroffice: client }) =>
    client && {
      get: (ref, options) => client.getCustomer(ref.id, options),
      listChangedSince: (since, options) => client.listCustomersChangedSince(since, options),
      create: (body, options) => client.createCustomer(body, options),
      update: async (ref, fields, options) => ({
        record: await client.patchCustomer(ref.id, toJsonPatch(fields, options.known), options),
      }),
    },
} satisfies RecordAdapter;
