import type { RecordAdapter } from '../record-adapter.js';
import { emailKey, nationalIdKey, numberKey } from '../sync/normalize.js';

/** The first national id that is set and not "hidden" (Employee/Customer carry two fields). */
export function firstNationalIdKey(...values: unknown[]): string | null {
  return values.map(nationalIdKey).find((v) => v !== null) ?? null;
}

/**
 * Match keys of a Customer or an Employee: both carry EmailAddress, Number and the two
 * national id fields (NationalIdNumber first: v2's own field).
 */
export const numberedContactKeys = {
  keys: (r) => ({
    email: emailKey(r.EmailAddress),
    nationalId: firstNationalIdKey(r.NationalIdNumber, r.SocialSecurityNumber),
    number: numberKey(r.Number),
    code: null,
  }),
  keyFields: {
    email: ['EmailAddress'],
    nationalId: ['NationalIdNumber', 'SocialSecurityNumber'],
    number: ['Number'],
    code: [],
  },
} satisfies Pick<RecordAdapter, 'keys' | 'keyFields'>;
