import { nationalIdKey } from '../sync/normalize.js';

/** The first national id that is set and not "hidden" (Employee/Customer carry two fields). */
export function firstNationalIdKey(...values: unknown[]): string | null {
  return values.map(nationalIdKey).find((v) => v !== null) ?? null;
}
