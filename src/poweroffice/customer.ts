import type { RecordAdapter } from '../record-adapter.js';
import { emailKey, numberKey } from '../sync/normalize.js';
import { formatPowerOfficeSince } from './client.js';
import { toJsonPatch, toPostBody } from './fields.js';
import { firstNationalIdKey } from './keys.js';
import { CustomerSchema, PowerOfficeRefSchema } from './schemas.js';

// Customer (`/Customers`). Created with ExternalImportReference as its origin id.

export const customerAdapter = {
  system: 'poweroffice',
  type: 'customer',
  label: 'Customer',
  updatedAtField: 'LastChangedDateTimeOffset',
  keys: (r) => ({
    email: emailKey(r.EmailAddress),
    nationalId: firstNationalIdKey(r.NationalIdNumber, r.SocialSecurityNumber),
    number: numberKey(r.Number),
  }),
  keyFields: {
    email: ['EmailAddress'],
    nationalId: ['NationalIdNumber', 'SocialSecurityNumber'],
    number: ['Number'],
  },
  webhook: { full: CustomerSchema, thin: PowerOfficeRefSchema, keyFields: ['Id'], pascal: true },
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
