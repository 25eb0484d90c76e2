import type { DbOrTrx } from '../db/database.js';
import { getMirrorRecord } from '../db/records.js';
import type { OutboundCommandRow } from '../db/schema.js';
import { adapterOf } from '../record-types.js';
import { flowById } from './flows.js';
import { getPath, normalizeValue, UNKNOWN } from './normalize.js';

// An update sent again after an attempt whose outcome was never recorded (a crash between the
// request and its bookkeeping, a successor requeueing a frozen holder's claims, a lost answer)
// may have landed already. The dispatcher claims an update only after the target's poller has
// read the system under its lease term and while no change of the target record waits in the
// inbox (src/db/commands.ts claimCommands), so the target's mirror is then as fresh as a poll:
// the fields it already shows with the value to write are not sent again (docs/ARCHITECTURE.md
// "Crash safety").

/**
 * Of a retried update's `fields` (target field or path → value), those the target's mirror
 * already holds with that value. None for a first attempt, a create, or an unknown flow.
 */
export async function fieldsAlreadyInPlace(
  db: DbOrTrx,
  command: OutboundCommandRow,
  fields: Record<string, unknown>,
): Promise<string[]> {
  if (command.operation !== 'update' || command.record_id === null || command.attempts <= 1)
    return [];
  const flow = flowById(command.flow ?? '');
  const adapter = adapterOf(command.record_type);
  if (flow === undefined || adapter === undefined) return [];
  const mirror = await getMirrorRecord(db, command.system, adapter.type, command.record_id);
  if (mirror === undefined || mirror.deleted_at !== null) return [];
  const inPlace: string[] = [];
  for (const [target, value] of Object.entries(fields)) {
    const field = flow.fields.find(
      (f) => (command.system === 'tidsbanken' ? f.tidsbanken : f.poweroffice) === target,
    );
    if (field === undefined) continue;
    const wanted = normalizeValue(field.kind, value);
    const current = normalizeValue(
      field.kind,
      command.system === 'tidsbanken' ? mirror.data[target] : getPath(mirror.data, target),
    );
    if (wanted !== UNKNOWN && wanted === current) inPlace.push(target);
  }
  return inPlace;
}
