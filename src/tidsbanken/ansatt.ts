import type { RecordAdapter } from '../record-adapter.js';
import { formatTidsbankenSince } from './client.js';
import { emailKey, nationalIdKey, numberKey } from '../sync/normalize.js';
import { replaceFields } from './replace.js';
import { AnsattRefSchema, AnsattSchema } from './schemas.js';

// Ansatt (`ansatt/ansatt`): the employee; its numeric Id is the employee number.

export const ansattAdapter = {
  system: 'tidsbanken',
  type: 'ansatt',
  label: 'Ansatt',
  updatedAtField: 'SistEndretDato',
  keys: (r) => ({
    email: emailKey(r.Epost),
    nationalId: nationalIdKey(r.Personnummer),
    number: numberKey(r.Id),
    code: null,
  }),
  keyFields: { email: ['Epost'], nationalId: ['Personnummer'], number: ['Id'], code: [] },
  webhook: { full: AnsattSchema, thin: AnsattRefSchema, keyFields: ['Id'] },
  formatSince: formatTidsbankenSince,
  createBody: (fields) => fields,
  connect: ({ tidsbanken: client }) =>
    client && {
      // The engine keeps ids as strings; an Ansatt's is a number on the wire.
      get: (ref, options) => client.getAnsatt(Number(ref.id), options),
      listChangedSince: (since, options) => client.listAnsatteChangedSince(since, options),
      create: (body, options) => client.createAnsatt(body, options),
      update: (ref, fields, options) =>
        replaceFields(
          'Ansatt',
          ref.id,
          fields,
          options.known,
          () => client.getAnsatt(Number(ref.id), options),
          (record) => client.updateAnsatt(record, options),
        ),
    },
} satisfies RecordAdapter;
