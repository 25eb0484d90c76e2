import type { ConflictPolicy } from '../config.js';
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

export interface DiffInput {
  flow: FlowDefinition;
  tidsbanken: SideState;
  poweroffice: SideState;
  /** undefined: a new link's first sync (fill blanks both ways, conflicts by policy). */
  shadow: Shadow | undefined;
  inflight: Inflight;
  policy: ConflictPolicy;
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
}

const OTHER: Record<SystemName, SystemName> = {
  tidsbanken: 'poweroffice',
  poweroffice: 'tidsbanken',
};

function readSide(field: FieldMapping, side: SystemName, record: Record<string, unknown>): Read {
  if (side === 'tidsbanken') return normalizeValue(field.kind, record[field.tidsbanken]);
  // A one-way field is never read from PowerOffice: its value there says nothing.
  if (field.direction === 'to-poweroffice') return UNKNOWN;
  const value = normalizeValue(field.kind, getPath(record, field.poweroffice));
  return field.invert && typeof value === 'boolean' ? !value : value;
}

/** The value to send to `target`, taken from the `source` record. */
function valueFor(
  field: FieldMapping,
  source: SystemName,
  record: Record<string, unknown>,
): unknown {
  const raw =
    source === 'tidsbanken'
      ? writableValue(field.kind, record[field.tidsbanken])
      : writableValue(field.kind, getPath(record, field.poweroffice));
  return field.invert && typeof raw === 'boolean' ? !raw : raw;
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

export function diffLink(input: DiffInput): DiffResult {
  const { flow } = input;
  const shadow: Shadow = { ...(input.shadow ?? {}) };
  const inflight: Inflight = {
    tidsbanken: { ...(input.inflight.tidsbanken ?? {}) },
    poweroffice: { ...(input.inflight.poweroffice ?? {}) },
  };
  const result: DiffResult = {
    shadow,
    inflight,
    writes: { tidsbanken: {}, poweroffice: {} },
    drops: { tidsbanken: [], poweroffice: [] },
    changes: [],
    conflicts: [],
  };
  const records = { tidsbanken: input.tidsbanken.record, poweroffice: input.poweroffice.record };
  const targetKey = (field: FieldMapping, side: SystemName) =>
    side === 'tidsbanken' ? field.tidsbanken : field.poweroffice;

  const write = (
    field: FieldMapping,
    from: SystemName,
    current: Read,
    previous: Normalized | undefined,
  ) => {
    const to = OTHER[from];
    result.writes[to][targetKey(field, to)] = valueFor(field, from, records[from]);
    // A one-way field is never read back (PowerOffice says "hidden"): no echo to wait for.
    if (field.direction === 'to-poweroffice') return;
    const entry = inflight[to]![field.key];
    const stale = new Set(entry?.stale ?? []);
    if (current !== UNKNOWN) stale.add(current);
    // This write replaces an earlier one of ours that may already have landed: its echo
    // (the previous shadow value) is no edit either.
    if (entry !== undefined && previous !== undefined) stale.add(previous);
    inflight[to]![field.key] = {
      stale: [...stale],
      ...(entry?.command ? { command: entry.command } : {}),
    };
  };
  const drop = (field: FieldMapping, side: SystemName) => {
    if (inflight[side]![field.key] !== undefined) {
      result.drops[side].push(targetKey(field, side));
      delete inflight[side]![field.key];
    }
  };

  for (const field of flow.fields) {
    if (!fieldApplies(field, records.poweroffice)) continue;
    const s = input.shadow === undefined ? undefined : shadow[field.key];
    const first = s === undefined;
    const current: Record<SystemName, Read> = {
      tidsbanken: readSide(field, 'tidsbanken', records.tidsbanken),
      poweroffice: readSide(field, 'poweroffice', records.poweroffice),
    };
    // What each side says, once echoes and stale pre-write reads are accounted for.
    const seen: Record<SystemName, Read> = { ...current };
    if (!first) {
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
    const t = seen.tidsbanken;
    const p = seen.poweroffice;

    if (first) {
      if (t === UNKNOWN && p === UNKNOWN) continue;
      if (p === UNKNOWN || (p === null && t !== UNKNOWN)) {
        shadow[field.key] = t as Normalized;
        if (t !== null && t !== UNKNOWN) {
          write(field, 'tidsbanken', current.poweroffice, undefined);
          result.changes.push({ key: field.key, from: undefined, to: t, source: 'tidsbanken' });
        }
      } else if (t === UNKNOWN || t === null) {
        shadow[field.key] = p;
        if (p !== null) {
          write(field, 'poweroffice', current.tidsbanken, undefined);
          result.changes.push({ key: field.key, from: undefined, to: p, source: 'poweroffice' });
        }
      } else if (t === p) {
        shadow[field.key] = t;
      } else {
        const { winner, resolution } = winnerOf(input);
        const value = winner === 'tidsbanken' ? t : p;
        shadow[field.key] = value;
        write(field, winner, current[OTHER[winner]], undefined);
        result.conflicts.push({
          key: field.key,
          tidsbanken: t,
          poweroffice: p,
          winner,
          resolution,
        });
        result.changes.push({ key: field.key, from: undefined, to: value, source: winner });
      }
      continue;
    }

    const changed: Record<SystemName, boolean> = {
      tidsbanken: t !== UNKNOWN && t !== s,
      poweroffice: p !== UNKNOWN && p !== s,
    };
    if (!changed.tidsbanken && !changed.poweroffice) continue;

    if (changed.tidsbanken && changed.poweroffice) {
      if (t === p) {
        // Both sides were edited to the same value: nothing to send, and nothing queued for
        // either side may overwrite it.
        shadow[field.key] = t as Normalized;
        drop(field, 'tidsbanken');
        drop(field, 'poweroffice');
        result.changes.push({ key: field.key, from: s, to: t as Normalized, source: 'both' });
        continue;
      }
      const { winner, resolution } = winnerOf(input);
      const value = (winner === 'tidsbanken' ? t : p) as Normalized;
      shadow[field.key] = value;
      drop(field, winner);
      write(field, winner, current[OTHER[winner]], s);
      result.conflicts.push({
        key: field.key,
        tidsbanken: t as Normalized,
        poweroffice: p as Normalized,
        winner,
        resolution,
      });
      result.changes.push({ key: field.key, from: s, to: value, source: winner });
      continue;
    }

    const source: SystemName = changed.tidsbanken ? 'tidsbanken' : 'poweroffice';
    const other = OTHER[source];
    const value = seen[source] as Normalized;
    if (inflight[source]![field.key] !== undefined) {
      // A write of the shadow value to `source` is still queued (it came from `other`), and
      // `source` has since been edited: a conflict like any other (docs/ARCHITECTURE.md "Outbox and dispatcher").
      const { winner, resolution } = winnerOf(input);
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
        write(field, other, current[source], undefined);
        continue;
      }
      drop(field, source);
    }
    shadow[field.key] = value;
    write(field, source, current[other], s);
    result.changes.push({ key: field.key, from: s, to: value, source });
  }
  return result;
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
