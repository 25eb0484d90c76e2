import type { ConflictPolicy, FlowId } from '../config.js';
import type { SystemName } from '../db/schema.js';
import { fieldApplies, type FieldMapping, type FlowDefinition } from './flows.js';
import {
  getPath,
  normalizeValue,
  UNKNOWN,
  writableValue,
  type Normalized,
  type Read,
} from './normalize.js';

// The three-way diff of one link (docs/ARCHITECTURE.md "Worker"): each side's current values against the
// shadow — the values last agreed on both sides. Pure: the worker applies the result.
//
// Echo suppression: when we queue a write of value w to a side, the shadow becomes w at once,
// so our own write read back (the echo) equals the shadow and is no change. A read of that
// side taken *before* the write landed still shows the old value; the link's `inflight`
// remembers those stale values per side and field until the echo is seen, so they are not
// mistaken for an edit. Anything else that differs from the shadow is a real change.

export type Shadow = Record<string, Normalized>;
export interface InflightEntry {
  /** Values a read of this side may still show until our write lands. */
  stale: Normalized[];
  /** The command writing this field (set by the worker once the command exists). */
  command?: string;
  /**
   * The side's own last-change time of the state our write produced (set by the dispatcher
   * from the write's response). A read newer than that shows an edit made after our write,
   * even when it happens to equal an old value.
   */
  landed?: string;
}

function readAfterLanding(entry: InflightEntry, side: SideState): boolean {
  if (entry.landed === undefined || side.updatedAt === undefined) return false;
  const landed = Date.parse(entry.landed.replace(' ', 'T'));
  return Number.isFinite(landed) && side.updatedAt > landed;
}
export type Inflight = Partial<Record<SystemName, Record<string, InflightEntry>>>;

export interface SideState {
  record: Record<string, unknown>;
  /** The source's last-change time in ms (for newest-wins); undefined when unknown. */
  updatedAt: number | undefined;
}

/**
 * Translates reference fields: the id on `to`'s side that is linked, in `flow`, to `id` on the
 * other side; undefined when that record has no link there.
 */
export type TranslateReference = (flow: FlowId, to: SystemName, id: string) => string | undefined;

/** A reference field held back: the record it names is not linked in its flow yet. */
export interface UnresolvedReference {
  /** The field's key (its Tidsbanken name). */
  key: string;
  /** The flow whose link is missing. */
  flow: FlowId;
  /** The side whose record holds the id of the unlinked record, and that id. */
  system: SystemName;
  id: string;
}

export interface DiffInput {
  flow: FlowDefinition;
  tidsbanken: SideState;
  poweroffice: SideState;
  /** undefined: a new link's first sync (fill blanks both ways, conflicts by policy). */
  shadow: Shadow | undefined;
  inflight: Inflight;
  policy: ConflictPolicy;
  /** Needed when the flow has reference fields; without it they all wait. */
  translate?: TranslateReference;
}

export interface FieldChange {
  key: string;
  from: Normalized | undefined;
  to: Normalized;
  /** Where the new value came from. */
  source: SystemName | 'both';
}

export interface FieldConflict {
  key: string;
  tidsbanken: Normalized;
  poweroffice: Normalized;
  winner: SystemName;
  /** e.g. `newest-wins: poweroffice` */
  resolution: string;
}

export interface DiffResult {
  shadow: Shadow;
  inflight: Inflight;
  /** Tidsbanken field → value to write; PowerOffice path → value to write. */
  writes: { tidsbanken: Record<string, unknown>; poweroffice: Record<string, unknown> };
  /**
   * Fields a queued write must no longer carry to that side (the side's own newer edit won).
   * Keys are the Tidsbanken field name / the PowerOffice path.
   */
  drops: { tidsbanken: string[]; poweroffice: string[] };
  changes: FieldChange[];
  conflicts: FieldConflict[];
  /** Reference fields held back this time (nothing written, shadow unchanged). */
  unresolved: UnresolvedReference[];
}

const OTHER: Record<SystemName, SystemName> = {
  tidsbanken: 'poweroffice',
  poweroffice: 'tidsbanken',
};

const noLinks: TranslateReference = () => undefined;

/** A reference's id as the side holds it (text), or null when it names no record. */
function referenceId(field: FieldMapping, side: SystemName, record: Record<string, unknown>) {
  const raw = side === 'tidsbanken' ? record[field.tidsbanken] : getPath(record, field.poweroffice);
  return writableValue('reference', raw) as string | null;
}

function readSide(
  field: FieldMapping,
  side: SystemName,
  record: Record<string, unknown>,
  translate: TranslateReference,
): Read {
  if (side === 'tidsbanken') return normalizeValue(field.kind, record[field.tidsbanken]);
  // A one-way field is never read from PowerOffice: its value there says nothing.
  if (field.direction === 'to-poweroffice') return UNKNOWN;
  if (field.references !== undefined) {
    // Compared as the Tidsbanken id it stands for (the shadow holds Tidsbanken ids).
    const id = referenceId(field, side, record);
    return id === null ? null : (translate(field.references, 'tidsbanken', id) ?? UNKNOWN);
  }
  const value = normalizeValue(field.kind, getPath(record, field.poweroffice));
  return field.invert && typeof value === 'boolean' ? !value : value;
}

/** The value to send to the other side, taken from the `source` record; undefined: not now. */
function valueFor(
  field: FieldMapping,
  source: SystemName,
  record: Record<string, unknown>,
  translate: TranslateReference,
): unknown {
  if (field.references !== undefined) {
    const id = referenceId(field, source, record);
    return id === null ? null : translate(field.references, OTHER[source], id);
  }
  const raw =
    source === 'tidsbanken'
      ? writableValue(field.kind, record[field.tidsbanken])
      : writableValue(field.kind, getPath(record, field.poweroffice));
  return field.invert && typeof raw === 'boolean' ? !raw : raw;
}

/**
 * Why a reference field must wait, if it must: PowerOffice names a record that has no link
 * (its id cannot be read as a Tidsbanken one), or Tidsbanken's value is to be written (first
 * sync, or changed) and names a record with no link. A raw id is never written across.
 */
function unresolvedReference(
  input: DiffInput,
  field: FieldMapping,
  shadowValue: Normalized | undefined,
): UnresolvedReference | undefined {
  if (field.references === undefined) return undefined;
  const flow = field.references;
  const translate = input.translate ?? noLinks;
  const po = referenceId(field, 'poweroffice', input.poweroffice.record);
  if (po !== null && translate(flow, 'tidsbanken', po) === undefined) {
    return { key: field.key, flow, system: 'poweroffice', id: po };
  }
  const tb = referenceId(field, 'tidsbanken', input.tidsbanken.record);
  if (tb !== null && tb !== shadowValue && translate(flow, 'poweroffice', tb) === undefined) {
    return { key: field.key, flow, system: 'tidsbanken', id: tb };
  }
  return undefined;
}

function winnerOf(input: DiffInput): { winner: SystemName; resolution: string } {
  switch (input.policy) {
    case 'tidsbanken-wins':
      return { winner: 'tidsbanken', resolution: 'tidsbanken-wins' };
    case 'poweroffice-wins':
      return { winner: 'poweroffice', resolution: 'poweroffice-wins' };
    case 'newest-wins': {
      const t = input.tidsbanken.updatedAt ?? -Infinity;
      const p = input.poweroffice.updatedAt ?? -Infinity;
      // A tie (or no timestamps at all) goes to Tidsbanken, the system of record for people.
      const winner: SystemName = p > t ? 'poweroffice' : 'tidsbanken';
      return { winner, resolution: `newest-wins: ${winner}` };
    }
  }
}

/** The diff under way: the input, and the result each field's case adds to. */
interface DiffRun {
  input: DiffInput;
  shadow: Shadow;
  inflight: Inflight;
  result: DiffResult;
  records: Record<SystemName, Record<string, unknown>>;
  translate: TranslateReference;
}

/** One field as both sides show it now. */
interface FieldReads {
  field: FieldMapping;
  /** The shadow's value; undefined on a first sync of the field. */
  s: Normalized | undefined;
  /** What each side's record holds. */
  current: Record<SystemName, Read>;
  /** What each side says, once echoes and stale pre-write reads are accounted for. */
  seen: Record<SystemName, Read>;
}

const targetKey = (field: FieldMapping, side: SystemName) =>
  side === 'tidsbanken' ? field.tidsbanken : field.poweroffice;

/** Queues `from`'s value of the field for the other side and remembers what may read stale. */
function write(
  run: DiffRun,
  field: FieldMapping,
  from: SystemName,
  current: Read,
  previous: Normalized | undefined,
): void {
  const to = OTHER[from];
  const value = valueFor(field, from, run.records[from], run.translate);
  if (value === undefined) return; // a reference whose link went away meanwhile: it waits
  run.result.writes[to][targetKey(field, to)] = value;
  // A one-way field is never read back (PowerOffice says "hidden"): no echo to wait for.
  if (field.direction === 'to-poweroffice') return;
  const entry = run.inflight[to]![field.key];
  const stale = new Set(entry?.stale ?? []);
  if (current !== UNKNOWN) stale.add(current);
  // This write replaces an earlier one of ours that may already have landed: its echo
  // (the previous shadow value) is no edit either.
  if (entry !== undefined && previous !== undefined) stale.add(previous);
  run.inflight[to]![field.key] = {
    stale: [...stale],
    ...(entry?.command ? { command: entry.command } : {}),
  };
}

/** Takes the field out of a write queued to `side` (that side's own newer edit won). */
function drop(run: DiffRun, field: FieldMapping, side: SystemName): void {
  if (run.inflight[side]![field.key] !== undefined) {
    run.result.drops[side].push(targetKey(field, side));
    delete run.inflight[side]![field.key];
  }
}

/** Each side's value, with our landed writes cleared and stale pre-write reads discounted. */
function readField(run: DiffRun, field: FieldMapping): FieldReads {
  const { input, inflight } = run;
  const s = input.shadow === undefined ? undefined : run.shadow[field.key];
  const current: Record<SystemName, Read> = {
    tidsbanken: readSide(field, 'tidsbanken', run.records.tidsbanken, run.translate),
    poweroffice: readSide(field, 'poweroffice', run.records.poweroffice, run.translate),
  };
  const seen: Record<SystemName, Read> = { ...current };
  if (s !== undefined) {
    for (const side of ['tidsbanken', 'poweroffice'] as const) {
      const entry = inflight[side]![field.key];
      if (entry === undefined || current[side] === UNKNOWN) continue;
      if (current[side] === s) {
        delete inflight[side]![field.key]; // our write has landed
      } else if (entry.stale.includes(current[side]) && !readAfterLanding(entry, input[side])) {
        seen[side] = s; // read from before it landed
      }
    }
  }
  return { field, s, current, seen };
}

/** No shadow yet: a blank side is filled from the other, a difference goes by the policy. */
function firstSyncField(run: DiffRun, { field, current, seen }: FieldReads): void {
  const { shadow, result } = run;
  const t = seen.tidsbanken;
  const p = seen.poweroffice;
  if (t === UNKNOWN && p === UNKNOWN) return;
  if (p === UNKNOWN || (p === null && t !== UNKNOWN)) {
    shadow[field.key] = t as Normalized;
    if (t !== null && t !== UNKNOWN) {
      write(run, field, 'tidsbanken', current.poweroffice, undefined);
      result.changes.push({ key: field.key, from: undefined, to: t, source: 'tidsbanken' });
    }
  } else if (t === UNKNOWN || t === null) {
    shadow[field.key] = p;
    if (p !== null) {
      write(run, field, 'poweroffice', current.tidsbanken, undefined);
      result.changes.push({ key: field.key, from: undefined, to: p, source: 'poweroffice' });
    }
  } else if (t === p) {
    shadow[field.key] = t;
  } else {
    const { winner, resolution } = winnerOf(run.input);
    const value = winner === 'tidsbanken' ? t : p;
    shadow[field.key] = value;
    write(run, field, winner, current[OTHER[winner]], undefined);
    result.conflicts.push({ key: field.key, tidsbanken: t, poweroffice: p, winner, resolution });
    result.changes.push({ key: field.key, from: undefined, to: value, source: winner });
  }
}

/** Both sides changed since the shadow: equal edits agree, different ones go by the policy. */
function bothChangedField(run: DiffRun, { field, s, current, seen }: FieldReads): void {
  const { shadow, result } = run;
  const t = seen.tidsbanken as Normalized;
  const p = seen.poweroffice as Normalized;
  if (t === p) {
    // Both sides were edited to the same value: nothing to send, and nothing queued for
    // either side may overwrite it.
    shadow[field.key] = t;
    drop(run, field, 'tidsbanken');
    drop(run, field, 'poweroffice');
    result.changes.push({ key: field.key, from: s, to: t, source: 'both' });
    return;
  }
  const { winner, resolution } = winnerOf(run.input);
  const value = winner === 'tidsbanken' ? t : p;
  shadow[field.key] = value;
  drop(run, field, winner);
  write(run, field, winner, current[OTHER[winner]], s);
  result.conflicts.push({ key: field.key, tidsbanken: t, poweroffice: p, winner, resolution });
  result.changes.push({ key: field.key, from: s, to: value, source: winner });
}

/** One side changed: its value goes to the other, unless a queued write to it wins. */
function oneChangedField(run: DiffRun, reads: FieldReads, source: SystemName): void {
  const { field, s, current, seen } = reads;
  const { shadow, result, inflight } = run;
  const other = OTHER[source];
  const value = seen[source] as Normalized;
  if (inflight[source]![field.key] !== undefined) {
    // A write of the shadow value to `source` is still queued (it came from `other`), and
    // `source` has since been edited: a conflict like any other.
    const { winner, resolution } = winnerOf(run.input);
    result.conflicts.push({
      key: field.key,
      tidsbanken: source === 'tidsbanken' ? value : (s ?? null),
      poweroffice: source === 'poweroffice' ? value : (s ?? null),
      winner,
      resolution,
    });
    if (winner === other) {
      // The queued value stands. It may have landed already, before this edit: write it
      // again (a still-pending command just absorbs it), and take this read as stale.
      write(run, field, other, current[source], undefined);
      return;
    }
    drop(run, field, source);
  }
  shadow[field.key] = value;
  write(run, field, source, current[other], s);
  result.changes.push({ key: field.key, from: s, to: value, source });
}

export function diffLink(input: DiffInput): DiffResult {
  const shadow: Shadow = { ...(input.shadow ?? {}) };
  const inflight: Inflight = {
    tidsbanken: { ...(input.inflight.tidsbanken ?? {}) },
    poweroffice: { ...(input.inflight.poweroffice ?? {}) },
  };
  const run: DiffRun = {
    input,
    shadow,
    inflight,
    records: { tidsbanken: input.tidsbanken.record, poweroffice: input.poweroffice.record },
    translate: input.translate ?? noLinks,
    result: {
      shadow,
      inflight,
      writes: { tidsbanken: {}, poweroffice: {} },
      drops: { tidsbanken: [], poweroffice: [] },
      changes: [],
      conflicts: [],
      unresolved: [],
    },
  };
  for (const field of input.flow.fields) {
    if (!fieldApplies(field, run.records.poweroffice)) continue;
    const waiting = unresolvedReference(
      input,
      field,
      input.shadow === undefined ? undefined : shadow[field.key],
    );
    if (waiting !== undefined) {
      // Held back whole: shadow and queued writes stay as they are until the link appears.
      run.result.unresolved.push(waiting);
      continue;
    }
    const reads = readField(run, field);
    if (reads.s === undefined) {
      firstSyncField(run, reads);
      continue;
    }
    const t = reads.seen.tidsbanken;
    const p = reads.seen.poweroffice;
    const changedT = t !== UNKNOWN && t !== reads.s;
    const changedP = p !== UNKNOWN && p !== reads.s;
    if (changedT && changedP) bothChangedField(run, reads);
    else if (changedT) oneChangedField(run, reads, 'tidsbanken');
    else if (changedP) oneChangedField(run, reads, 'poweroffice');
  }
  return run.result;
}

export function isEmptyDiff(result: DiffResult): boolean {
  return (
    Object.keys(result.writes.tidsbanken).length === 0 &&
    Object.keys(result.writes.poweroffice).length === 0 &&
    result.changes.length === 0 &&
    result.conflicts.length === 0 &&
    result.drops.tidsbanken.length === 0 &&
    result.drops.poweroffice.length === 0
  );
}
