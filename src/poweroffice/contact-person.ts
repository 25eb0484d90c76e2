import type { RecordAdapter } from '../record-adapter.js';
import { emailKey } from '../sync/normalize.js';
import { formatPowerOfficeSince } from './client.js';
import { toJsonPatch, toPostBody } from './fields.js';
import { firstNationalIdKey } from './keys.js';
import { ContactPersonRefSchema, ContactPersonWebhookSchema } from './schemas.js';

// ContactPerson (`/ContactPersons/{contactId}/{id}`): every path carries the parent customer
// or supplier (ContactId). Created with ExternalCode as its origin id.

export const contactPersonAdapter = {
  system: 'poweroffice',
  type: 'contactperson',
  label: 'ContactPerson',
  updatedAtField: 'LastChangedDateTimeOffset',
  parentField: 'ContactId',
  // v2 contact persons carry no national id; read one if a future version sends it.
  keys: (r) => ({
    email: emailKey(r.EmailAddress),
    nationalId: firstNationalIdKey(r.SocialSecurityNumber, r.NationalIdNumber),
    number: null,
    code: null,
  }),
  keyFields: {
    email: ['EmailAddress'],
    nationalId: ['SocialSecurityNumber', 'NationalIdNumber'],
    number: [],
    code: [],
  },
  webhook: {
    full: ContactPersonWebhookSchema,
    thin: ContactPersonRefSchema,
    keyFields: ['Id', 'ContactId'],
  },
  formatSince: formatPowerOfficeSince,
  createBody: toPostBody,
  // Contact persons live under a customer/supplier; without one configured, none is created.
  createParentId: (config) => config.poweroffice.contactParentId,
  connect: ({ poweroffice: client }) =>
    client && {
      get: (ref, options) =>
        ref.parentId === null
          ? Promise.resolve(undefined)
          : client.getContactPerson(ref.parentId, ref.id, options),
      listChangedSince: (since, options) => client.listContactPersonsChangedSince(since, options),
      create: (body, options) => client.createContactPerson(parentOf(options), body, options),
      update: async (ref, fields, options) => ({
        record: await client.patchContactPerson(
          parentOf(ref),
          ref.id,
          toJsonPatch(fields, options.known),
          options,
        ),
      }),
    },
} satisfies RecordAdapter;

function parentOf(where: { parentId: string | null }): string {
  if (where.parentId === null) throw new TypeError('a contact person needs its parent ContactId');
  return where.parentId;
}
