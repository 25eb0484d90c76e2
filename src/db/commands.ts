import { sql, type RawBuilder } from 'kysely';
import type { DbOrTrx } from './database.js';
import { atKey, olderThan, type HistoryPosition } from './history-position.js';
import { termIsCurrent, type LeaseTerm } from './leases.js';
import type { RecordKey } from './records.js';
import type { OutboundCommandRow, SystemName } from './schema.js';

export interface UpdateTarget {
  system: SystemName;
  recordType: string;
  recordId: string;
  parentId: string | null;
  flow: string;
  linkId: string;
}

type Fields = Record<string, unknown>;

function fieldsOf(row: { payload: Record<string, unknown> }): Fields {
  const fields = row.payload.fields;
  return fields !== null && typeof fields === 'object' ? { ...(fields as Fields) } : {};
}

async function lockPendingUpdate(
  db: DbOrTrx,
  t: Omit<UpdateTarget, 'flow' | 'linkId' | 'parentId'>,
) {
  return db
    .selectFrom('outbound_commands')
    .selectAll()
    .where('system', '=', t.system)
    .where('record_type', '=', t.recordType)
    .where('record_id', '=', t.recordId)
    .where('operation', '=', 'update')
    .where('status', '=', 'pending')
    .forUpdate()
    .executeTakeFirst();
}

/**
 * Coalescing (docs/ARCHITECTURE.md "Outbox and dispatcher"): newer changes for a record fold into its pending update, so
 * ten edits while the target is rate-limited cost one write. A command already on the wire
 * ('sending') is never edited; the change opens a new pending command instead.
 */
export async function upsertPendingUpdate(
  db: DbOrTrx,
  target: UpdateTarget,
  fields: Fields,
): Promise<string> {
  const existing = await lockPendingUpdate(db, target);
  if (existing !== undefined) {
    await db
      .updateTable('outbound_commands')
      .set({
        payload: JSON.stringify({
          ...existing.payload,
          fields: { ...fieldsOf(existing), ...fields },
        }),
        updated_at: sql<Date>`now()`,
      })
      .where('id', '=', existing.id)
      .execute();
    return existing.id;
  }
  const row = await db
    .insertInto('outbound_commands')
    .values({
      system: target.system,
      operation: 'update',
      record_type: target.recordType,
      record_id: target.recordId,
      parent_id: target.parentId,
      flow: target.flow,
      link_id: target.linkId,
      payload: JSON.stringify({ fields }),
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return row.id;
}

/**
 * Many pending updates in one statement, each to a record that has none yet. Returns the new
 * command id per target ("system/record_type/record_id"); a target that already has a
 * pending update is left out, for the caller to fold in with `upsertPendingUpdate`.
 */
export async function insertPendingUpdates(
  db: DbOrTrx,
  updates: { target: UpdateTarget; fields: Fields }[],
): Promise<Map<string, string>> {
  const ids = new Map<string, string>();
  if (updates.length === 0) return ids;
  const rows = updates.map(({ target, fields }) => ({
    system: target.system,
    record_type: target.recordType,
    record_id: target.recordId,
    parent_id: target.parentId,
    flow: target.flow,
    link_id: target.linkId,
    payload: { fields },
  }));
  const result = await sql<{ id: string; system: string; record_type: string; record_id: string }>`
    insert into outbound_commands
      (system, operation, record_type, record_id, parent_id, flow, link_id, payload)
    select v.system, 'update', v.record_type, v.record_id, v.parent_id, v.flow, v.link_id, v.payload
    from rows from (jsonb_to_recordset(${JSON.stringify(rows)}::jsonb)
      as (system text, record_type text, record_id text, parent_id text, flow text,
          link_id bigint, payload jsonb)) with ordinality
      as v(system, record_type, record_id, parent_id, flow, link_id, payload, n)
    order by v.n
    on conflict (system, record_type, record_id)
      where status = 'pending' and operation = 'update' do nothing
    returning id, system, record_type, record_id`.execute(db);
  for (const row of result.rows) {
    ids.set(targetKey(row.system, row.record_type, row.record_id), row.id);
  }
  return ids;
}

export function targetKey(system: string, recordType: string, recordId: string): string {
  return `${system}/${recordType}/${recordId}`;
}

/**
 * Takes fields out of the record's pending update (the record's own newer edit won).
 * Returns the fields that were not pending there — they may be on the wire already.
 */
export async function removeFieldsFromPendingUpdate(
  db: DbOrTrx,
  target: Omit<UpdateTarget, 'flow' | 'linkId' | 'parentId'>,
  keys: string[],
): Promise<string[]> {
  const existing = await lockPendingUpdate(db, target);
  if (existing === undefined) return keys;
  const fields = fieldsOf(existing);
  const missing = keys.filter((k) => !(k in fields));
  for (const k of keys) delete fields[k];
  if (Object.keys(fields).length === 0) {
    await db
      .updateTable('outbound_commands')
      .set({
        status: 'superseded',
        payload: JSON.stringify({ ...existing.payload, fields }),
        result: JSON.stringify({
          reason: 'every field was overtaken by a newer edit on the target',
        }),
        updated_at: sql<Date>`now()`,
      })
      .where('id', '=', existing.id)
      .execute();
  } else {
    await db
      .updateTable('outbound_commands')
      .set({
        payload: JSON.stringify({ ...existing.payload, fields }),
        updated_at: sql<Date>`now()`,
      })
      .where('id', '=', existing.id)
      .execute();
  }
  return missing;
}

export interface NewCreateCommand {
  system: SystemName;
  recordType: string;
  /** Known up front for Tidsbanken (the caller supplies Id); null for PowerOffice. */
  recordId: string | null;
  parentId: string | null;
  flow: string;
  originSystem: SystemName;
  originId: string;
  originRecordId: string;
  body: Record<string, unknown>;
}

/** Queues a create unless a live one for the same origin exists (creates are idempotent). */
export async function insertCreateCommand(
  db: DbOrTrx,
  command: NewCreateCommand,
): Promise<string | undefined> {
  const row = await db
    .insertInto('outbound_commands')
    .values({
      system: command.system,
      operation: 'create',
      record_type: command.recordType,
      record_id: command.recordId,
      parent_id: command.parentId,
      flow: command.flow,
      origin_system: command.originSystem,
      origin_id: command.originId,
      origin_record_id: command.originRecordId,
      payload: JSON.stringify({ body: command.body }),
    })
    .onConflict((oc) => oc.doNothing())
    .returning('id')
    .executeTakeFirst();
  return row?.id;
}

/** The live create that makes (or made) this Tidsbanken record, if it is one of ours. */
export async function findCreateOf(
  db: DbOrTrx,
  system: SystemName,
  recordType: string,
  recordId: string,
  flow: string,
): Promise<OutboundCommandRow | undefined> {
  return db
    .selectFrom('outbound_commands')
    .selectAll()
    .where('system', '=', system)
    .where('record_type', '=', recordType)
    .where('record_id', '=', recordId)
    .where('flow', '=', flow)
    .where('operation', '=', 'create')
    .where('status', 'in', ['pending', 'sending', 'sent', 'dry_run'])
    .executeTakeFirst();
}

/** Longest a command waits for the worker to fold more changes of its record into it. */
const HOLD_SECONDS = 2;

/**
 * Claims due commands of one system for sending, oldest first and at most one per target
 * record, skipping records with a command already on the wire: two writes of one record in
 * flight at once could land out of order, and a Tidsbanken replace carries a whole record read
 * just before it, so a second one in flight would revert the first.
 *
 * An update waits while the target record has changes of its own in the inbox that the worker
 * has not processed (an edit made on the target while we were down or busy, seen by a poll or
 * webhook): the worker decides first, by the conflict policy, whether the queued value still
 * stands (docs/ARCHITECTURE.md "Outbox and dispatcher"). `heldTypes` are record types of this
 * system whose updates wait altogether: their poller has not yet read the system since this
 * lease term began, so an edit there may not even be in the inbox yet.
 */
export async function claimCommands(
  db: DbOrTrx,
  term: LeaseTerm,
  limit: number,
  worker: string,
  heldTypes: readonly string[] = [],
): Promise<OutboundCommandRow[]> {
  const system = term.system;
  const typeHeld =
    heldTypes.length === 0
      ? sql`false`
      : sql`c.record_type in (${sql.join(heldTypes.map((t) => sql`${t}`))})`;
  // `status = 'pending'` is checked again by the update itself: a row claimed meanwhile is not
  // claimed twice. Only under the system's current lease term, which the claim records: a
  // holder that lost the lease (frozen, cut off) claims nothing.
  const result = await sql<OutboundCommandRow>`
    update outbound_commands
       set status = 'sending', locked_at = now(), locked_by = ${worker},
           locked_epoch = ${term.epoch}::bigint,
           attempts = attempts + 1, updated_at = now()
     where status = 'pending'
       and ${termIsCurrent(term)}
       and id in (
         select id from (
           select distinct on (c.record_type, coalesce(c.record_id, 'new:' || c.id::text)) c.id
             from (
               -- The oldest due commands only, read in id order off the pending index: a
               -- backlog of tens of thousands is never sorted whole for one claim.
               select * from outbound_commands
                where system = ${system} and status = 'pending' and run_at <= now()
                  -- A paused flow's commands wait (and keep absorbing changes) until resumed.
                  and (flow is null or flow not in (
                    select p.flow from flow_controls p where p.paused_at is not null))
                order by id
                limit ${limit * 4}) c
            where not exists (
                select 1 from outbound_commands s
                 where s.system = c.system and s.record_type = c.record_type
                   and s.record_id = c.record_id and s.status = 'sending')
              -- Held while the worker still has changes of the source record to fold in
              -- (a burst of edits: one write with the last value, not one per claim), but
              -- never longer than HOLD_SECONDS after the command was first queued.
              and (c.link_id is null
                or c.created_at <= now() - interval '${sql.raw(String(HOLD_SECONDS))} seconds'
                or not exists (
                  select 1 from links l
                    join inbound_events e
                      on e.source = case when c.system = 'poweroffice' then 'tidsbanken'
                                         else 'poweroffice' end
                     and e.record_type = case when c.system = 'poweroffice'
                                              then l.tidsbanken_type else l.poweroffice_type end
                     and e.record_id = case when c.system = 'poweroffice'
                                            then l.tidsbanken_id else l.poweroffice_id end
                     and e.status = 'pending'
                   where l.id = c.link_id))
              and (c.operation <> 'update' or not (${typeHeld}))
              and (c.operation <> 'update' or not exists (
                select 1 from inbound_events t
                 where t.source = c.system and t.record_type = c.record_type
                   and t.record_id = c.record_id and t.status = 'pending'))
            order by c.record_type, coalesce(c.record_id, 'new:' || c.id::text), c.id
         ) firsts
         order by id
         limit ${limit})
    returning *`.execute(db);
  return result.rows.sort((a, b) => Number(a.id) - Number(b.id));
}

/**
 * Updates left on the wire (the rows `which` selects) whose record meanwhile got a newer
 * pending update fold into it, the newer values winning, and are marked superseded: putting
 * them back to pending would make two pending updates of one record (which the schema
 * refuses), and dropping them would lose the fields only they carry.
 */
async function foldStrandedUpdates(db: DbOrTrx, which: RawBuilder<boolean>): Promise<number> {
  const result = await sql<{ id: string }>`
    with stranded as (
      select s.id, s.payload, p.id as pending_id
        from outbound_commands s
        join outbound_commands p
          on p.system = s.system and p.record_type = s.record_type
         and p.record_id = s.record_id and p.operation = 'update' and p.status = 'pending'
       where s.operation = 'update'
         and s.id in (select id from outbound_commands where ${which})
         for update of s, p),
    folded as (
      update outbound_commands p
         set payload = jsonb_set(p.payload, '{fields}',
               coalesce(st.payload -> 'fields', '{}'::jsonb)
                 || coalesce(p.payload -> 'fields', '{}'::jsonb)),
             updated_at = now()
        from stranded st
       where p.id = st.pending_id)
    update outbound_commands s
       set status = 'superseded', locked_at = null, locked_by = null,
           result = jsonb_build_object('supersededBy', st.pending_id::text), updated_at = now()
      from stranded st
     where s.id = st.id
    returning s.id`.execute(db);
  return result.rows.length;
}

/** Rows `which` selects, back to pending (after folding those a newer update overtook). */
async function requeueWhere(db: DbOrTrx, which: RawBuilder<boolean>): Promise<number> {
  await foldStrandedUpdates(db, which);
  const result = await db
    .updateTable('outbound_commands')
    .set({ status: 'pending', locked_at: null, locked_by: null, updated_at: sql<Date>`now()` })
    .where(which)
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

/** A dispatcher that died mid-send left rows 'sending': its successor sends them again. */
export async function requeueSendingCommands(db: DbOrTrx, term: LeaseTerm): Promise<number> {
  return requeueWhere(
    db,
    sql<boolean>`system = ${term.system} and status = 'sending' and ${termIsCurrent(term)}`,
  );
}

/**
 * Who holds a claimed command: the claimer's name and the attempt its claim counted. Every
 * status change of a claimed command is made only while the row is still that claim's (still
 * 'sending', same claimer, same attempt): a claim that was taken over (requeued by a successor,
 * claimed again) changes nothing, so a command is never sent again because of a stale outcome.
 */
export type CommandClaim = Pick<
  OutboundCommandRow,
  'id' | 'system' | 'locked_by' | 'locked_epoch' | 'attempts'
>;

/**
 * The row is still this claim's, and the lease term the claim was made under is still the
 * system's current one (fencing: a holder that lost its lease changes nothing).
 */
function whereClaimed(claim: CommandClaim) {
  return sql<boolean>`id = ${claim.id} and status = 'sending'
    and locked_by is not distinct from ${claim.locked_by} and attempts = ${claim.attempts}
    and ${termIsCurrent({ system: claim.system, epoch: claim.locked_epoch ?? '0' })}`;
}

/** One command left 'sending' by a send whose outcome could not be recorded: pending again. */
export async function requeueCommand(db: DbOrTrx, claim: CommandClaim): Promise<void> {
  await requeueWhere(db, whereClaimed(claim));
}

/** Records a send's success; false when the claim was lost meanwhile (nothing changed). */
export async function markCommandDone(
  db: DbOrTrx,
  claim: CommandClaim,
  status: 'sent' | 'dry_run',
  result: unknown,
  recordId?: string,
): Promise<boolean> {
  const updated = await db
    .updateTable('outbound_commands')
    .set({
      status,
      sent_at: sql<Date>`now()`,
      locked_at: null,
      result: JSON.stringify(result ?? null),
      updated_at: sql<Date>`now()`,
      ...(recordId !== undefined ? { record_id: recordId } : {}),
    })
    .where(whereClaimed(claim))
    .executeTakeFirst();
  return Number(updated.numUpdatedRows) > 0;
}

export async function markCommandDead(
  db: DbOrTrx,
  claim: CommandClaim,
  error: unknown,
): Promise<boolean> {
  const updated = await db
    .updateTable('outbound_commands')
    .set({
      status: 'dead',
      locked_at: null,
      last_error: JSON.stringify(error),
      updated_at: sql<Date>`now()`,
    })
    .where(whereClaimed(claim))
    .executeTakeFirst();
  return Number(updated.numUpdatedRows) > 0;
}

/** How a command waits in the outbox before its next attempt. */
export interface RetryWait {
  /**
   * The wait the system asked for (Retry-After, a credentials pause, a change to sync first);
   * without it, capped exponential backoff computed in SQL (2^attempts s, ≤ 5 min).
   */
  afterMs?: number | undefined;
  /**
   * The attempt was refused before anything was applied and says nothing about the command
   * (a 429, refused credentials, a change to sync first): it does not count toward
   * max_attempts, so waiting never makes a command dead.
   */
  uncounted?: boolean;
}

/**
 * Back to pending, due after `wait`: the command waits in the outbox, still absorbable. An
 * update whose record got a newer pending update meanwhile folds into that one instead
 * ('superseded'); 'lost' when the claim is no longer this claimer's (nothing changed).
 */
export async function markCommandRetry(
  db: DbOrTrx,
  claim: CommandClaim,
  error: unknown,
  wait: RetryWait = {},
): Promise<'retry' | 'superseded' | 'lost'> {
  if ((await foldStrandedUpdates(db, whereClaimed(claim))) > 0) return 'superseded';
  const afterMs = wait.afterMs === undefined ? null : Math.max(0, Math.round(wait.afterMs));
  const result = await sql<{ id: string }>`
    update outbound_commands
       set status = 'pending', locked_at = null, locked_by = null,
           attempts = attempts - ${wait.uncounted === true ? 1 : 0},
           last_error = ${JSON.stringify(error)}::jsonb,
           run_at = now() + coalesce(interval '1 millisecond' * ${afterMs}::integer,
                                     least(interval '5 minutes',
                                           interval '1 second' * power(2, least(attempts, 12))
                                             * (0.75 + random() / 2))),
           updated_at = now()
     where ${whereClaimed(claim)}
    returning id`.execute(db);
  return result.rows.length > 0 ? 'retry' : 'lost';
}

/**
 * Takes out of an update the fields that a newer command for the same record also writes
 * (pending, on the wire, or sent): sending the older value now — after a retry's backoff or a
 * restart — would overwrite the newer one. Returns the fields left; an update left with none
 * is marked superseded.
 */
export async function pruneSupersededFields(
  db: DbOrTrx,
  command: OutboundCommandRow,
): Promise<Fields> {
  const fields = fieldsOf(command);
  if (command.operation !== 'update' || command.record_id === null) return fields;
  const newer = await db
    .selectFrom('outbound_commands')
    .select(['id', 'payload'])
    .where('system', '=', command.system)
    .where('record_type', '=', command.record_type)
    .where('record_id', '=', command.record_id)
    .where('operation', '=', 'update')
    .where('id', '>', command.id)
    .where('status', 'in', ['pending', 'sending', 'sent'])
    .execute();
  if (newer.length === 0) return fields;
  const overtaken = new Set(newer.flatMap((row) => Object.keys(fieldsOf(row))));
  const left: Fields = {};
  for (const [key, value] of Object.entries(fields)) if (!overtaken.has(key)) left[key] = value;
  if (Object.keys(left).length === Object.keys(fields).length) return fields;
  const updated = await db
    .updateTable('outbound_commands')
    .set(
      Object.keys(left).length === 0
        ? {
            status: 'superseded',
            locked_at: null,
            result: JSON.stringify({ reason: 'every field is written by a newer command' }),
            updated_at: sql<Date>`now()`,
          }
        : {
            payload: JSON.stringify({ ...command.payload, fields: left }),
            updated_at: sql<Date>`now()`,
          },
    )
    .where(whereClaimed(command))
    .executeTakeFirst();
  // The claim was lost: nothing of it is to be sent.
  return Number(updated.numUpdatedRows) > 0 ? left : {};
}

/** The statuses the admin API shows: 'sending' is an internal detail of 'pending'. */
export type ApiCommandStatus = 'pending' | 'sent' | 'dead' | 'dry_run' | 'superseded' | 'dropped';

export interface CommandFilter {
  status?: ApiCommandStatus | undefined;
  system?: SystemName | undefined;
  flow?: string | undefined;
  before?: string | undefined;
  limit: number;
}

/** Newest first; one more row than `limit` when there is a next page. */
export async function listCommands(
  db: DbOrTrx,
  filter: CommandFilter,
): Promise<OutboundCommandRow[]> {
  let query = db.selectFrom('outbound_commands').selectAll();
  if (filter.status === 'pending') query = query.where('status', 'in', ['pending', 'sending']);
  else if (filter.status !== undefined) query = query.where('status', '=', filter.status);
  if (filter.system !== undefined) query = query.where('system', '=', filter.system);
  if (filter.flow !== undefined) query = query.where('flow', '=', filter.flow);
  if (filter.before !== undefined) query = query.where('id', '<', filter.before);
  return query
    .orderBy('id', 'desc')
    .limit(filter.limit + 1)
    .execute();
}

export async function getCommand(db: DbOrTrx, id: string): Promise<OutboundCommandRow | undefined> {
  return db.selectFrom('outbound_commands').selectAll().where('id', '=', id).executeTakeFirst();
}

/**
 * Puts a dead command back in the queue: pending, attempts 0, due now. `last_error` is kept
 * so the operator still sees why it died until the next attempt overwrites it. Only a dead
 * row changes (the status check is in the UPDATE itself, so a concurrent replay or a
 * dispatcher cannot race it); undefined when the id is unknown or the command is not dead.
 */
export async function requeueDeadCommand(
  db: DbOrTrx,
  id: string,
): Promise<OutboundCommandRow | undefined> {
  // Raw SQL: the generated-timestamp column types do not accept now() in kysely's .set().
  const result = await sql<OutboundCommandRow>`
    update outbound_commands
    set status = 'pending', attempts = 0, run_at = now(), locked_at = null, locked_by = null,
      updated_at = now()
    where id = ${id} and status = 'dead'
    returning *`.execute(db);
  return result.rows[0];
}

/**
 * One page of a record's history from this table, newest first by (created_at, id), after
 * `before` (index outbound_commands_create_target); `limit` rows.
 */
export async function listRecordCommands(
  db: DbOrTrx,
  key: RecordKey,
  page: { before?: HistoryPosition | undefined; limit: number },
): Promise<(OutboundCommandRow & { at_key: string })[]> {
  let query = db
    .selectFrom('outbound_commands')
    .selectAll()
    .select(atKey.as('at_key'))
    .where('system', '=', key.system)
    .where('record_type', '=', key.recordType)
    .where('record_id', '=', key.recordId);
  if (page.before !== undefined) query = query.where(olderThan(page.before, 2));
  return query.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(page.limit).execute();
}

/**
 * Takes a dead command off the dead list without sending it ('dropped'). Undefined when the
 * id is unknown or the command is not dead (the status check is in the UPDATE itself).
 */
export async function dropDeadCommand(
  db: DbOrTrx,
  id: string,
): Promise<OutboundCommandRow | undefined> {
  return db
    .updateTable('outbound_commands')
    .set({
      status: 'dropped',
      locked_at: null,
      locked_by: null,
      result: JSON.stringify({ reason: 'dropped by an operator' }),
      updated_at: sql<Date>`now()`,
    })
    .where('id', '=', id)
    .where('status', '=', 'dead')
    .returningAll()
    .executeTakeFirst();
}

/** Ids of dead commands (oldest first, after `after`), for a bulk replay in batches. */
export async function listDeadCommandIds(
  db: DbOrTrx,
  filter: {
    system?: SystemName | undefined;
    flow?: string | undefined;
    after?: string;
    limit: number;
  },
): Promise<string[]> {
  let query = db.selectFrom('outbound_commands').select('id').where('status', '=', 'dead');
  if (filter.system !== undefined) query = query.where('system', '=', filter.system);
  if (filter.flow !== undefined) query = query.where('flow', '=', filter.flow);
  if (filter.after !== undefined) query = query.where('id', '>', filter.after);
  const rows = await query.orderBy('id').limit(filter.limit).execute();
  return rows.map((r) => r.id);
}

/** Pending commands of a link that has just been unlinked: they are no longer to be sent. */
export async function supersedePendingCommandsOfLink(
  db: DbOrTrx,
  linkId: string,
  reason: string,
): Promise<string[]> {
  const rows = await db
    .updateTable('outbound_commands')
    .set({ status: 'superseded', result: JSON.stringify({ reason }), updated_at: sql<Date>`now()` })
    .where('link_id', '=', linkId)
    .where('status', '=', 'pending')
    .returning('id')
    .execute();
  return rows.map((r) => r.id);
}

/**
 * Retention: deletes up to `limit` finished commands last changed more than `days` days ago,
 * oldest first (index outbound_commands_finished); returns how many. Finished: superseded,
 * dropped, and updates sent or recorded in dry run. Creates that were sent or recorded are
 * kept (they say which records this service made, and stop the same record being created
 * twice), as are pending, sending and dead commands. Rows another transaction holds are skipped.
 */
export async function pruneFinishedCommands(
  db: DbOrTrx,
  days: number,
  limit: number,
): Promise<number> {
  const result = await sql`
    delete from outbound_commands where id in (
      select id from outbound_commands
       where (status in ('superseded', 'dropped')
              or (operation = 'update' and status in ('sent', 'dry_run')))
         and updated_at < now() - ${days}::int * interval '1 day'
       order by updated_at
       limit ${limit}
       for update skip locked)`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}
