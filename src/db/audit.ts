import type { DbOrTrx } from './database.js';
import type { SystemName } from './schema.js';

export interface AuditEntry {
  system: SystemName;
  recordType: string;
  recordId: string;
  kind: 'diff' | 'link' | 'conflict' | 'command' | 'unlink' | 'skipped' | 'mirror';
  flow?: string | null;
  linkId?: string | null;
  eventId?: string | null;
  commandId?: string | null;
  detail: Record<string, unknown>;
}

export async function insertAuditEntries(db: DbOrTrx, entries: AuditEntry[]): Promise<void> {
  if (entries.length === 0) return;
  await db
    .insertInto('audit_entries')
    .values(
      entries.map((e) => ({
        system: e.system,
        record_type: e.recordType,
        record_id: e.recordId,
        kind: e.kind,
        flow: e.flow ?? null,
        link_id: e.linkId ?? null,
        event_id: e.eventId ?? null,
        command_id: e.commandId ?? null,
        detail: JSON.stringify(e.detail),
      })),
    )
    .execute();
}
