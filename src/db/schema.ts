import type { ColumnType, Generated, Selectable } from 'kysely';

// Table types for the schema in migrations/. Kept by hand: the migrations are frozen,
// this file follows them.

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type NullableTimestamp = ColumnType<
  Date | null,
  Date | string | null | undefined,
  Date | string | null
>;
type Json<T = unknown> = ColumnType<T, string, string>;
type JsonObject = Record<string, unknown>;
// bigserial/bigint come back from `pg` as strings; we keep them as strings (ids are strings
// on the admin API too) and never do arithmetic on them.
type BigId = ColumnType<string, never, never>;

export type SystemName = 'tidsbanken' | 'poweroffice';

export interface InboundEventsTable {
  id: BigId;
  source: SystemName;
  origin: 'webhook' | 'poller' | 'reconcile' | 'operator' | 'write';
  event_id: string;
  event_type: string;
  record_type: string;
  record_id: string;
  parent_id: string | null;
  payload: Json<JsonObject>;
  is_thin: Generated<boolean>;
  content_hash: string | null;
  occurred_at: NullableTimestamp;
  status: Generated<'pending' | 'done' | 'dead'>;
  attempts: Generated<number>;
  last_error: string | null;
  run_at: Timestamp;
  locked_at: NullableTimestamp;
  locked_by: string | null;
  processed_at: NullableTimestamp;
  created_at: Timestamp;
  /** A record set aside (not storable or readable as it is): its JSON text; else null. */
  raw_record: ColumnType<string | null, string | null | undefined, string | null>;
}

export interface RecordsTable {
  system: SystemName;
  record_type: string;
  record_id: string;
  parent_id: string | null;
  data: Json<JsonObject>;
  email_key: string | null;
  national_id_key: string | null;
  number_key: ColumnType<string | null, string | number | null, string | number | null>;
  code_key: string | null;
  source_updated_at: NullableTimestamp;
  deleted_at: NullableTimestamp;
  last_event_id: ColumnType<string | null, string | number | null, string | number | null>;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface LinksTable {
  id: BigId;
  flow: string;
  tidsbanken_type: string;
  tidsbanken_id: string;
  poweroffice_type: string;
  poweroffice_id: string;
  poweroffice_parent_id: string | null;
  linked_by: string;
  shadow: Json<JsonObject>;
  /** { tidsbanken: { [field]: { stale: unknown[], command: string } }, poweroffice: … } */
  inflight: ColumnType<JsonObject, string | undefined, string>;
  last_synced_at: NullableTimestamp;
  unlinked_at: NullableTimestamp;
  unlink_reason: string | null;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface ConflictsTable {
  id: BigId;
  flow: string;
  kind: 'ambiguous_match' | 'field_conflict';
  system: SystemName;
  record_type: string;
  record_id: string;
  link_id: ColumnType<string | null, string | number | null, string | number | null>;
  field: string | null;
  tidsbanken_value: Json<unknown> | null;
  poweroffice_value: Json<unknown> | null;
  candidates: Json<unknown> | null;
  resolution: string | null;
  status: Generated<'open' | 'resolved'>;
  resolved_at: NullableTimestamp;
  created_at: Timestamp;
}

export type CommandStatus =
  'pending' | 'sending' | 'sent' | 'dead' | 'dry_run' | 'superseded' | 'dropped';

export interface OutboundCommandsTable {
  id: BigId;
  system: SystemName;
  operation: 'create' | 'update';
  record_type: string;
  record_id: string | null;
  parent_id: string | null;
  flow: string | null;
  link_id: ColumnType<string | null, string | number | null, string | number | null>;
  origin_system: SystemName | null;
  origin_id: string | null;
  origin_record_id: string | null;
  payload: Json<JsonObject>;
  status: Generated<CommandStatus>;
  attempts: Generated<number>;
  max_attempts: Generated<number>;
  last_error: Json<unknown> | null;
  run_at: Timestamp;
  locked_at: NullableTimestamp;
  locked_by: string | null;
  /** The lease epoch of the claim (fencing); null while not claimed. */
  locked_epoch: ColumnType<string | null, string | null | undefined, string | null>;
  sent_at: NullableTimestamp;
  result: Json<unknown> | null;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface PollerCursorsTable {
  system: SystemName;
  record_type: string;
  cursor: string | null;
  full_read_at: NullableTimestamp;
  last_polled_at: NullableTimestamp;
  last_success_at: NullableTimestamp;
  last_error: string | null;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface ReconcileRunsTable {
  id: BigId;
  status: Generated<'running' | 'done' | 'failed'>;
  progress: Json<JsonObject>;
  error: string | null;
  started_at: Timestamp;
  finished_at: NullableTimestamp;
  created_at: Timestamp;
  /** The process running it (null: started before runs had owners). */
  owner: ColumnType<string | null, string | null | undefined, string | null>;
  /** Renewed by the run's heartbeat; a running run past it has no live owner. */
  expires_at: NullableTimestamp;
}

/** Leadership of one target system (src/db/leases.ts). */
export interface LeasesTable {
  system: SystemName;
  holder: string | null;
  /** Raised by every take-over; bigint, kept as a string. */
  epoch: ColumnType<string, string | number | undefined, string | number>;
  expires_at: Timestamp;
  acquired_at: NullableTimestamp;
  renewed_at: NullableTimestamp;
}

export interface AuditEntriesTable {
  id: BigId;
  system: SystemName;
  record_type: string;
  record_id: string;
  kind: string;
  flow: string | null;
  link_id: ColumnType<string | null, string | number | null, string | number | null>;
  event_id: ColumnType<string | null, string | number | null, string | number | null>;
  command_id: ColumnType<string | null, string | number | null, string | number | null>;
  detail: Json<JsonObject>;
  created_at: Timestamp;
}

export interface SyncStateTable {
  key: string;
  value: Json<JsonObject>;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface FlowControlsTable {
  flow: string;
  paused_at: NullableTimestamp;
  updated_at: Timestamp;
}

export interface LinkHoldsTable {
  flow: string;
  tidsbanken_id: string;
  poweroffice_id: string;
  link_id: ColumnType<string | null, string | number | null, string | number | null>;
  created_at: Timestamp;
}

export interface ReferenceWaitsTable {
  link_id: ColumnType<string, string | number, string | number>;
  field: string;
  ref_flow: string;
  ref_system: SystemName;
  ref_id: string;
  created_at: Timestamp;
}

export interface ConsoleSessionsTable {
  id_hash: string;
  csrf_token: string;
  created_at: Timestamp;
  expires_at: Timestamp;
}

export interface Database {
  inbound_events: InboundEventsTable;
  records: RecordsTable;
  links: LinksTable;
  conflicts: ConflictsTable;
  outbound_commands: OutboundCommandsTable;
  poller_cursors: PollerCursorsTable;
  reconcile_runs: ReconcileRunsTable;
  audit_entries: AuditEntriesTable;
  sync_state: SyncStateTable;
  flow_controls: FlowControlsTable;
  link_holds: LinkHoldsTable;
  console_sessions: ConsoleSessionsTable;
  leases: LeasesTable;
  reference_waits: ReferenceWaitsTable;
}

export type InboundEventRow = Selectable<InboundEventsTable>;
export type RecordRow = Selectable<RecordsTable>;
export type LinkRow = Selectable<LinksTable>;
export type ConflictRow = Selectable<ConflictsTable>;
export type OutboundCommandRow = Selectable<OutboundCommandsTable>;
export type PollerCursorRow = Selectable<PollerCursorsTable>;
export type ReconcileRunRow = Selectable<ReconcileRunsTable>;
export type AuditEntryRow = Selectable<AuditEntriesTable>;
