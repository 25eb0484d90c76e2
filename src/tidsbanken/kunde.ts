import type { RecordAdapter } from '../record-adapter.js';
import { formatTidsbankenSince } from './client.js';
import { emailKey, numberKey } from '../sync/normalize.js';
import { replaceFields } from './replace.js';
import { KundeRefSchema, KundeSchema } from './schemas.js';

// Kunde (`prosjekt/Kunde`): the customer; its Id is a string.

export const kundeAdapter = {
  system: 'tidsbanken',
  type: 'kunde',
  label: 'Kunde',
  updatedAtField: 'SistEndretDato',
  keys: (r) => ({
    email: emailKey(r.Epost),
    nationalId: null,
    number: numberKey(r.Id),
    code: null,
  }),
  keyFields: { email: ['Epost'], nationalId: [], number: ['Id'], code: [] },
  webhook: { full: KundeSchema, thin: KundeRefSchema, keyFields: ['Id'] },
  formatSince: formatTidsbankenSince,
  createBody: (fields) => fields,
  connect: ({ tidsbanken: client }) =>
    client && {
      get: (ref, options) => client.getKunde(ref.id, options),
      listChangedSince: (since, options) => client.listKunderChangedSince(since, options),
      create: (body, options) => client.createKunde(body, options),
      update: (ref, fields, options) =>
        replaceFields(
          'Kunde',
          ref.id,
          fields,
          options.known,
          () => client.getKunde(ref.id, options),
          (record) => client.updateKunde(record, options),
        ),
    },
} satisfies RecordAdapter;
