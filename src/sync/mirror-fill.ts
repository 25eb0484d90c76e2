import type { MirrorFill } from '../db/inbound-events.js';
import { adapterOf } from '../record-types.js';

// What the mirror stores of a record besides its data: the normalized match keys of its
// adapter and its last-change time. Shared by the worker and the gate-closed poll path.

/** A record's match keys and last-change time for the mirror (undefined: unknown type). */
export function mirrorFillOf(
  recordType: string,
  data: Record<string, unknown>,
  occurredAt: Date | null,
): MirrorFill | undefined {
  const adapter = adapterOf(recordType);
  if (adapter === undefined) return undefined;
  const keys = adapter.keys(data);
  const updatedAt = data[adapter.updatedAtField];
  return {
    email: keys.email,
    nationalId: keys.nationalId,
    number: keys.number,
    code: keys.code,
    sourceUpdatedAt:
      typeof updatedAt === 'string' && updatedAt !== ''
        ? updatedAt
        : (occurredAt?.toISOString() ?? null),
  };
}
