import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ConflictPolicy } from '../../src/config.js';
import {
  diffLink,
  isEmptyDiff,
  type DiffResult,
  type Inflight,
  type Shadow,
} from '../../src/sync/diff.js';
import { setPath } from '../../src/poweroffice/fields.js';
import {
  fieldApplies,
  flowById,
  FLOWS,
  type FieldMapping,
  type FlowDefinition,
} from '../../src/sync/flows.js';
import { getPath, normalizeValue, UNKNOWN } from '../../src/sync/normalize.js';

type Rec = Record<string, unknown>;

function flow(id: string): FlowDefinition {
  const f = flowById(id);
  if (f === undefined) throw new Error(`no flow ${id}`);
  return f;
}
const employee = flow('ansatt-employee');
const contact = flow('ansatt-contactperson');
const customer = flow('kunde-customer');

const T0 = Date.parse('2026-01-05T10:00:00Z');

// Reference fields (a field holding the id of another flow's record) are translated through
// that flow's links. The flow-table-driven properties below link every id to the same id on
// the other side, so a reference behaves like any other field there; held-back references
// have tests of their own.
const linkedToItself = { translate: (_flow: string, _to: string, id: string) => id };

interface Run {
  flow?: FlowDefinition;
  tb: Rec;
  po: Rec;
  shadow?: Shadow;
  inflight?: Inflight;
  policy?: ConflictPolicy;
  tbAt?: number;
  poAt?: number;
}
function diff(run: Run): DiffResult {
  return diffLink({
    flow: run.flow ?? contact,
    tidsbanken: { record: run.tb, updatedAt: run.tbAt ?? T0 },
    poweroffice: { record: run.po, updatedAt: run.poAt ?? T0 },
    shadow: run.shadow,
    inflight: run.inflight ?? {},
    policy: run.policy ?? 'newest-wins',
  });
}

/** A write landing: Tidsbanken takes field names, PowerOffice takes (nested) paths. */
function apply(tb: Rec, po: Rec, result: DiffResult): { tb: Rec; po: Rec } {
  const nextTb = structuredClone(tb);
  const nextPo = structuredClone(po);
  for (const [k, v] of Object.entries(result.writes.tidsbanken)) nextTb[k] = v;
  for (const [k, v] of Object.entries(result.writes.poweroffice)) setPath(nextPo, k, v);
  return { tb: nextTb, po: nextPo };
}

const inflightKeys = (inflight: Inflight) => ({
  tidsbanken: Object.keys(inflight.tidsbanken ?? {}).sort(),
  poweroffice: Object.keys(inflight.poweroffice ?? {}).sort(),
});

// An agreed contact-person link: Kari, active, in Oslo.
const tbKari = {
  Id: 7,
  Fornavn: 'Kari',
  Etternavn: 'Nordmann',
  Epost: 'kari@example.no',
  Mobil: '90000000',
  Tittel: 'Regnskap',
  Aktiv: true,
  Adresse: 'Storgata 1',
  Postnummer: '0155',
  Poststed: 'Oslo',
};
const poKari = {
  Id: 500,
  ContactId: 9,
  FirstName: 'Kari',
  LastName: 'Nordmann',
  EmailAddress: 'kari@example.no',
  PhoneNumber: '90000000',
  Title: 'Regnskap',
  IsActive: true,
  MailAddress: { AddressLine1: 'Storgata 1', ZipCode: '0155', City: 'Oslo' },
};
const shadowKari: Shadow = {
  Fornavn: 'Kari',
  Etternavn: 'Nordmann',
  Epost: 'kari@example.no',
  Mobil: '90000000',
  Tittel: 'Regnskap',
  Aktiv: true,
  Adresse: 'Storgata 1',
  Postnummer: '0155',
  Poststed: 'Oslo',
};

describe('diffLink: first sync (no shadow)', () => {
  it('fills blanks both ways and records the agreed values as the shadow', () => {
    const result = diff({
      tb: { Id: 7, Fornavn: 'Kari', Etternavn: '', Epost: 'kari@example.no', Aktiv: true },
      po: {
        FirstName: 'Kari',
        LastName: 'Nordmann',
        EmailAddress: 'KARI@example.no',
        Title: 'Sjef',
        IsActive: true,
      },
      shadow: undefined,
    });
    expect(result.writes.tidsbanken).toEqual({ Etternavn: 'Nordmann', Tittel: 'Sjef' });
    expect(result.writes.poweroffice).toEqual({});
    expect(result.conflicts).toEqual([]);
    expect(result.shadow).toEqual({
      Fornavn: 'Kari',
      Etternavn: 'Nordmann',
      Epost: 'kari@example.no',
      Mobil: null,
      Tittel: 'Sjef',
      Aktiv: true,
      Adresse: null,
      Postnummer: null,
      Poststed: null,
    });
    expect(result.changes.map((c) => [c.key, c.source])).toEqual([
      ['Etternavn', 'poweroffice'],
      ['Tittel', 'poweroffice'],
    ]);
  });

  it('fills PowerOffice from Tidsbanken, nested address fields as paths', () => {
    const result = diff({
      tb: { ...tbKari },
      po: { FirstName: 'Kari', LastName: 'Nordmann', MailAddress: { City: 'Oslo' } },
      shadow: undefined,
    });
    expect(result.writes.poweroffice).toEqual({
      EmailAddress: 'kari@example.no',
      PhoneNumber: '90000000',
      Title: 'Regnskap',
      IsActive: true,
      'MailAddress.AddressLine1': 'Storgata 1',
      'MailAddress.ZipCode': '0155',
    });
    expect(result.writes.tidsbanken).toEqual({});
    expect(result.shadow).toEqual(shadowKari);
    // What a read of PowerOffice showed before these writes land is stale, not an edit.
    expect(result.inflight.poweroffice?.['MailAddress.ZipCode'] ?? null).toBeNull();
    expect(result.inflight.poweroffice?.Postnummer).toEqual({ stale: [null] });
  });

  it('writes nothing and changes nothing when both sides already agree', () => {
    const result = diff({ tb: { ...tbKari }, po: structuredClone(poKari), shadow: undefined });
    expect(result.shadow).toEqual(shadowKari);
    expect(result.writes).toEqual({ tidsbanken: {}, poweroffice: {} });
    expect(result.changes).toEqual([]);
    expect(result.conflicts).toEqual([]);
    expect(inflightKeys(result.inflight)).toEqual({ tidsbanken: [], poweroffice: [] });
  });

  it.each([
    ['newest-wins', T0, T0 + 1000, 'poweroffice'],
    ['newest-wins', T0 + 1000, T0, 'tidsbanken'],
    ['newest-wins', T0, T0, 'tidsbanken'],
    ['tidsbanken-wins', T0, T0 + 1000, 'tidsbanken'],
    ['poweroffice-wins', T0 + 1000, T0, 'poweroffice'],
  ] as const)(
    'resolves differing set values by %s (tb at %d, po at %d → %s) and records the conflict',
    (policy, tbAt, poAt, winner) => {
      const result = diff({
        tb: { ...tbKari, Tittel: 'Regnskap' },
        po: { ...structuredClone(poKari), Title: 'Økonomi' },
        shadow: undefined,
        policy,
        tbAt,
        poAt,
      });
      const value = winner === 'tidsbanken' ? 'Regnskap' : 'Økonomi';
      expect(result.shadow.Tittel).toBe(value);
      expect(result.conflicts).toEqual([
        {
          key: 'Tittel',
          tidsbanken: 'Regnskap',
          poweroffice: 'Økonomi',
          winner,
          resolution: policy === 'newest-wins' ? `newest-wins: ${winner}` : policy,
        },
      ]);
      if (winner === 'tidsbanken') {
        expect(result.writes).toEqual({ tidsbanken: {}, poweroffice: { Title: 'Regnskap' } });
      } else {
        expect(result.writes).toEqual({ tidsbanken: { Tittel: 'Økonomi' }, poweroffice: {} });
      }
    },
  );

  it('newest-wins with no timestamps at all goes to Tidsbanken', () => {
    const result = diffLink({
      flow: contact,
      tidsbanken: { record: { Fornavn: 'Kari' }, updatedAt: undefined },
      poweroffice: { record: { FirstName: 'Karin' }, updatedAt: undefined },
      shadow: undefined,
      inflight: {},
      policy: 'newest-wins',
    });
    expect(result.conflicts.map((c) => c.winner)).toEqual(['tidsbanken']);
    expect(result.writes.poweroffice).toEqual({ FirstName: 'Kari' });
  });

  it('newest-wins with only a PowerOffice timestamp goes to PowerOffice', () => {
    const result = diffLink({
      flow: contact,
      tidsbanken: { record: { Fornavn: 'Kari' }, updatedAt: undefined },
      poweroffice: { record: { FirstName: 'Karin' }, updatedAt: T0 },
      shadow: undefined,
      inflight: {},
      policy: 'newest-wins',
    });
    expect(result.conflicts.map((c) => c.winner)).toEqual(['poweroffice']);
    expect(result.writes.tidsbanken).toEqual({ Fornavn: 'Karin' });
  });

  it('writes a Tidsbanken Personnummer to PowerOffice, never a "hidden" one back', () => {
    const result = diff({
      flow: employee,
      tb: { Id: 7, Personnummer: '01019012345' },
      po: { Number: 7, NationalIdNumber: 'hidden' },
      shadow: undefined,
    });
    expect(result.writes.poweroffice).toEqual({ NationalIdNumber: '01019012345' });
    expect(result.writes.tidsbanken).toEqual({});
    expect(result.conflicts).toEqual([]);
    expect(result.shadow.Personnummer).toBe('01019012345');
  });

  it('never takes a national id from PowerOffice, even a readable one', () => {
    const result = diff({
      flow: employee,
      tb: { Id: 7, Personnummer: null },
      po: { Number: 7, NationalIdNumber: '01019012345' },
      shadow: undefined,
    });
    expect(result.writes.tidsbanken).toEqual({});
    expect(result.writes.poweroffice).toEqual({});
    expect(result.shadow.Personnummer).toBeNull();
  });

  it('fills Aktiv from IsArchived inverted, and IsArchived from Aktiv inverted', () => {
    const fromPo = diff({
      flow: employee,
      tb: { Id: 7 },
      po: { Number: 7, IsArchived: true },
      shadow: undefined,
    });
    expect(fromPo.writes.tidsbanken).toEqual({ Aktiv: false });
    expect(fromPo.shadow.Aktiv).toBe(false);
    const fromTb = diff({
      flow: employee,
      tb: { Id: 7, Aktiv: false },
      po: { Number: 7 },
      shadow: undefined,
    });
    expect(fromTb.writes.poweroffice).toEqual({ IsArchived: true });
    expect(fromTb.shadow.Aktiv).toBe(false);
  });

  it('treats Aktiv=true and IsArchived=false as agreement, not a conflict', () => {
    const result = diff({
      flow: employee,
      tb: { Id: 7, Aktiv: true },
      po: { Number: 7, IsArchived: false },
      shadow: undefined,
    });
    expect(result.conflicts).toEqual([]);
    expect(result.writes).toEqual({ tidsbanken: {}, poweroffice: {} });
    expect(result.shadow.Aktiv).toBe(true);
  });

  it('compares dates in any vendor format as YYYY-MM-DD', () => {
    const result = diff({
      flow: employee,
      tb: { Id: 7, Fodt: '1990-01-01T00:00:00', AnsattDato: '2021-09-25 08:03:00.123456+00:00' },
      po: { Number: 7, DateOfBirth: '1990-01-01', StartDate: '2021-09-25T00:00:00Z' },
      shadow: undefined,
    });
    expect(result.conflicts).toEqual([]);
    expect(result.writes).toEqual({ tidsbanken: {}, poweroffice: {} });
    expect(result.shadow.Fodt).toBe('1990-01-01');
    expect(result.shadow.AnsattDato).toBe('2021-09-25');
  });
});

describe('diffLink: after the first sync', () => {
  const base = (over: Partial<Run> = {}): Run => ({
    tb: { ...tbKari },
    po: structuredClone(poKari),
    shadow: { ...shadowKari },
    ...over,
  });

  it('when both sides equal the shadow, is empty', () => {
    const result = diff(base());
    expect(isEmptyDiff(result)).toBe(true);
    expect(result.shadow).toEqual(shadowKari);
  });

  it('an edit in Tidsbanken is written to PowerOffice and recorded as in flight', () => {
    const result = diff(base({ tb: { ...tbKari, Tittel: 'Leder' } }));
    expect(result.writes).toEqual({ tidsbanken: {}, poweroffice: { Title: 'Leder' } });
    expect(result.shadow.Tittel).toBe('Leder');
    expect(result.changes).toEqual([
      { key: 'Tittel', from: 'Regnskap', to: 'Leder', source: 'tidsbanken' },
    ]);
    expect(result.conflicts).toEqual([]);
    expect(result.inflight.poweroffice).toEqual({ Tittel: { stale: ['Regnskap'] } });
    expect(result.inflight.tidsbanken).toEqual({});
  });

  it('an edit in PowerOffice is written to Tidsbanken', () => {
    const po = structuredClone(poKari);
    po.PhoneNumber = '91111111';
    const result = diff(base({ po }));
    expect(result.writes).toEqual({ tidsbanken: { Mobil: '91111111' }, poweroffice: {} });
    expect(result.shadow.Mobil).toBe('91111111');
    expect(result.inflight.tidsbanken).toEqual({ Mobil: { stale: ['90000000'] } });
  });

  it('clearing a field is a change, written as null', () => {
    const result = diff(base({ tb: { ...tbKari, Tittel: '  ' } }));
    expect(result.writes.poweroffice).toEqual({ Title: null });
    expect(result.shadow.Tittel).toBeNull();
  });

  it('does not mutate its input shadow or inflight', () => {
    const shadow = { ...shadowKari };
    const inflight: Inflight = { poweroffice: { Mobil: { stale: ['1'] } } };
    diff(base({ tb: { ...tbKari, Tittel: 'Leder', Mobil: '2' }, shadow, inflight }));
    expect(shadow).toEqual(shadowKari);
    expect(inflight).toEqual({ poweroffice: { Mobil: { stale: ['1'] } } });
  });

  describe('echo suppression', () => {
    const edited = () => {
      const tb = { ...tbKari, Tittel: 'Leder' };
      const first = diff(base({ tb }));
      return { tb, first };
    };

    it('the echo of our own write is no change and clears the in-flight entry', () => {
      const { tb, first } = edited();
      const { po } = apply(tb, poKari, first);
      const echo = diff({ tb, po, shadow: first.shadow, inflight: first.inflight });
      expect(isEmptyDiff(echo)).toBe(true);
      expect(echo.shadow).toEqual(first.shadow);
      expect(inflightKeys(echo.inflight)).toEqual({ tidsbanken: [], poweroffice: [] });
    });

    it('a read of the target from before the write landed is no change', () => {
      const { tb, first } = edited();
      const stale = diff({
        tb,
        po: structuredClone(poKari),
        shadow: first.shadow,
        inflight: first.inflight,
      });
      expect(isEmptyDiff(stale)).toBe(true);
      expect(stale.shadow.Tittel).toBe('Leder');
      // still waiting for the echo
      expect(stale.inflight.poweroffice).toEqual({ Tittel: { stale: ['Regnskap'] } });
    });

    it('a Tidsbanken Aktiv=false reaches PowerOffice as IsArchived=true and echoes back quietly', () => {
      const tb = { Id: 7, Aktiv: false };
      const first = diff({
        flow: employee,
        tb,
        po: { Number: 7, IsArchived: false },
        shadow: { Aktiv: true },
      });
      expect(first.writes.poweroffice).toEqual({ IsArchived: true });
      expect(first.shadow.Aktiv).toBe(false);
      const echo = diff({
        flow: employee,
        tb,
        po: { Number: 7, IsArchived: true },
        shadow: first.shadow,
        inflight: first.inflight,
      });
      expect(isEmptyDiff(echo)).toBe(true);
      expect(inflightKeys(echo.inflight).poweroffice).toEqual([]);
    });

    it('an archived Employee makes the Ansatt inactive', () => {
      const result = diff({
        flow: employee,
        tb: { Id: 7, Aktiv: true },
        po: { Number: 7, IsArchived: true },
        shadow: { Aktiv: true },
      });
      expect(result.writes).toEqual({ tidsbanken: { Aktiv: false }, poweroffice: {} });
    });

    it('a nested address edit is written by path and echoes back quietly', () => {
      const po = structuredClone(poKari);
      po.MailAddress.City = 'Bergen';
      const first = diff(base({ po }));
      expect(first.writes).toEqual({ tidsbanken: { Poststed: 'Bergen' }, poweroffice: {} });
      const tb = { ...tbKari, Poststed: 'Bergen' };
      const echo = diff({ tb, po, shadow: first.shadow, inflight: first.inflight });
      expect(isEmptyDiff(echo)).toBe(true);

      const tbEdit = diff(base({ tb: { ...tbKari, Poststed: 'Trondheim' } }));
      expect(tbEdit.writes.poweroffice).toEqual({ 'MailAddress.City': 'Trondheim' });
    });
  });

  describe('a new edit on the target while our write is queued', () => {
    // Tidsbanken edited Tittel Regnskap → Leder; the write to PowerOffice is queued.
    const queued = () => {
      const tb = { ...tbKari, Tittel: 'Leder' };
      const first = diff(base({ tb }));
      const po = structuredClone(poKari);
      po.Title = 'Økonomi'; // a real edit in PowerOffice, before our write landed
      return { tb, po, first };
    };

    it('when the target edit wins, drops the field from the queued write and writes it back', () => {
      const { tb, po, first } = queued();
      const result = diff({
        tb,
        po,
        shadow: first.shadow,
        inflight: first.inflight,
        policy: 'poweroffice-wins',
      });
      expect(result.drops).toEqual({ tidsbanken: [], poweroffice: ['Title'] });
      expect(result.writes).toEqual({ tidsbanken: { Tittel: 'Økonomi' }, poweroffice: {} });
      expect(result.shadow.Tittel).toBe('Økonomi');
      expect(result.conflicts).toEqual([
        {
          key: 'Tittel',
          tidsbanken: 'Leder',
          poweroffice: 'Økonomi',
          winner: 'poweroffice',
          resolution: 'poweroffice-wins',
        },
      ]);
      expect(result.inflight.poweroffice).toEqual({});
      expect(result.inflight.tidsbanken).toEqual({ Tittel: { stale: ['Leder'] } });
    });

    it('newest-wins: the later PowerOffice edit wins over the queued value', () => {
      const { tb, po, first } = queued();
      const result = diff({
        tb,
        po,
        shadow: first.shadow,
        inflight: first.inflight,
        tbAt: T0,
        poAt: T0 + 60_000,
      });
      expect(result.drops.poweroffice).toEqual(['Title']);
      expect(result.conflicts.map((c) => c.resolution)).toEqual(['newest-wins: poweroffice']);
    });

    it('when the queued value wins, writes it again (it may have landed already) and marks the target read as stale', () => {
      const { tb, po, first } = queued();
      const result = diff({
        tb,
        po,
        shadow: first.shadow,
        inflight: first.inflight,
        policy: 'tidsbanken-wins',
      });
      expect(result.drops).toEqual({ tidsbanken: [], poweroffice: [] });
      expect(result.writes).toEqual({ tidsbanken: {}, poweroffice: { Title: 'Leder' } });
      expect(result.shadow.Tittel).toBe('Leder');
      expect(result.conflicts).toEqual([
        {
          key: 'Tittel',
          tidsbanken: 'Leder',
          poweroffice: 'Økonomi',
          winner: 'tidsbanken',
          resolution: 'tidsbanken-wins',
        },
      ]);
      expect(result.inflight.poweroffice?.Tittel?.stale.sort()).toEqual(['Regnskap', 'Økonomi']);

      // Reading the same PowerOffice state again is no new conflict.
      const again = diff({ tb, po, shadow: result.shadow, inflight: result.inflight });
      expect(isEmptyDiff(again)).toBe(true);
      // And when the queued write lands, everything agrees.
      const landed = structuredClone(po);
      landed.Title = 'Leder';
      const echo = diff({ tb, po: landed, shadow: result.shadow, inflight: result.inflight });
      expect(isEmptyDiff(echo)).toBe(true);
      expect(echo.inflight.poweroffice).toEqual({});
    });

    it('keeps the command id of an in-flight entry when the field is written again', () => {
      const first = diff(base({ tb: { ...tbKari, Tittel: 'Leder' } }));
      const inflight: Inflight = {
        poweroffice: { Tittel: { ...first.inflight.poweroffice!.Tittel!, command: 'cmd-1' } },
      };
      const second = diff({
        tb: { ...tbKari, Tittel: 'Direktør' },
        po: structuredClone(poKari),
        shadow: first.shadow,
        inflight,
      });
      expect(second.writes.poweroffice).toEqual({ Title: 'Direktør' });
      expect(second.inflight.poweroffice?.Tittel?.command).toBe('cmd-1');
      expect(second.conflicts).toEqual([]);
    });
  });

  describe('edits on both sides', () => {
    it('to the same value: no write, and any queued write of the field is dropped', () => {
      const first = diff(base({ tb: { ...tbKari, Tittel: 'Leder' } }));
      // then both sides end up at "Sjef" before our write landed
      const po = structuredClone(poKari);
      po.Title = 'Sjef';
      const result = diff({
        tb: { ...tbKari, Tittel: 'Sjef' },
        po,
        shadow: first.shadow,
        inflight: first.inflight,
      });
      expect(result.writes).toEqual({ tidsbanken: {}, poweroffice: {} });
      expect(result.drops).toEqual({ tidsbanken: [], poweroffice: ['Title'] });
      expect(result.shadow.Tittel).toBe('Sjef');
      expect(result.conflicts).toEqual([]);
      expect(result.changes).toEqual([
        { key: 'Tittel', from: 'Leder', to: 'Sjef', source: 'both' },
      ]);
    });

    it('to the same value with no queued write: no write, no drops', () => {
      const po = structuredClone(poKari);
      po.Title = 'Sjef';
      const result = diff(base({ tb: { ...tbKari, Tittel: 'Sjef' }, po }));
      expect(result.writes).toEqual({ tidsbanken: {}, poweroffice: {} });
      expect(result.drops).toEqual({ tidsbanken: [], poweroffice: [] });
      expect(result.shadow.Tittel).toBe('Sjef');
    });

    it.each([
      ['tidsbanken-wins', T0, T0, 'tidsbanken'],
      ['poweroffice-wins', T0, T0, 'poweroffice'],
      ['newest-wins', T0 + 5000, T0, 'tidsbanken'],
      ['newest-wins', T0, T0 + 5000, 'poweroffice'],
      ['newest-wins', T0, T0, 'tidsbanken'],
    ] as const)(
      'differently, by %s: the winner is written to the loser',
      (policy, tbAt, poAt, w) => {
        const po = structuredClone(poKari);
        po.Title = 'Økonomi';
        const result = diff(base({ tb: { ...tbKari, Tittel: 'Leder' }, po, policy, tbAt, poAt }));
        expect(result.conflicts).toHaveLength(1);
        expect(result.conflicts[0]).toMatchObject({
          key: 'Tittel',
          tidsbanken: 'Leder',
          poweroffice: 'Økonomi',
          winner: w,
        });
        if (w === 'tidsbanken') {
          expect(result.writes).toEqual({ tidsbanken: {}, poweroffice: { Title: 'Leder' } });
          expect(result.shadow.Tittel).toBe('Leder');
        } else {
          expect(result.writes).toEqual({ tidsbanken: { Tittel: 'Økonomi' }, poweroffice: {} });
          expect(result.shadow.Tittel).toBe('Økonomi');
        }
      },
    );
  });

  describe('normalization', () => {
    it('an e-mail difference in case alone is no change and is never written', () => {
      const po = structuredClone(poKari);
      po.EmailAddress = ' Kari@Example.NO ';
      const result = diff(base({ tb: { ...tbKari, Epost: 'KARI@EXAMPLE.NO' }, po }));
      expect(isEmptyDiff(result)).toBe(true);
    });

    it('a real e-mail change is written with its case kept', () => {
      const result = diff(base({ tb: { ...tbKari, Epost: 'Kari.N@Example.no' } }));
      expect(result.writes.poweroffice).toEqual({ EmailAddress: 'Kari.N@Example.no' });
      expect(result.shadow.Epost).toBe('kari.n@example.no');
    });

    it('"" and null and whitespace are the same value', () => {
      const shadow = { ...shadowKari, Tittel: null };
      const po = structuredClone(poKari);
      po.Title = '';
      const result = diff(base({ tb: { ...tbKari, Tittel: '   ' }, po, shadow }));
      expect(isEmptyDiff(result)).toBe(true);
    });

    it('surrounding spaces alone are no change', () => {
      const result = diff(base({ tb: { ...tbKari, Fornavn: '  Kari ' } }));
      expect(isEmptyDiff(result)).toBe(true);
    });
  });

  describe('Personnummer → NationalIdNumber (one way)', () => {
    const tb = { Id: 7, Personnummer: '01019012345' };
    const shadow: Shadow = { Personnummer: '01019012345' };

    it('a "hidden" read from PowerOffice is never a change and never written to Tidsbanken', () => {
      const result = diff({
        flow: employee,
        tb,
        po: { Number: 7, NationalIdNumber: 'hidden' },
        shadow,
      });
      expect(isEmptyDiff(result)).toBe(true);
    });

    it('a readable but different PowerOffice value is never written to Tidsbanken', () => {
      const result = diff({
        flow: employee,
        tb,
        po: { Number: 7, NationalIdNumber: '31129912345' },
        shadow,
      });
      expect(isEmptyDiff(result)).toBe(true);
    });

    it('a Tidsbanken change is written to PowerOffice', () => {
      const result = diff({
        flow: employee,
        tb: { Id: 7, Personnummer: '311299 54321' },
        po: { Number: 7, NationalIdNumber: 'hidden' },
        shadow,
      });
      expect(result.writes).toEqual({
        tidsbanken: {},
        poweroffice: { NationalIdNumber: '311299 54321' },
      });
      expect(result.shadow.Personnummer).toBe('31129954321');
      expect(result.conflicts).toEqual([]);
    });

    it('a formatting-only Tidsbanken change (digits equal) is no change', () => {
      const result = diff({
        flow: employee,
        tb: { Id: 7, Personnummer: '010190-12345' },
        po: { Number: 7, NationalIdNumber: 'hidden' },
        shadow,
      });
      expect(isEmptyDiff(result)).toBe(true);
    });
  });

  describe('OrganizationNumber (only when CountryCode is NO or empty)', () => {
    const kunde = { Id: 'K1', Navn: 'Firma', Organisasjonsnummer: '999888777' };
    const shadow: Shadow = { Navn: 'Firma', Organisasjonsnummer: '999888777' };

    it('is synced for a Norwegian customer', () => {
      const result = diff({
        flow: customer,
        tb: { ...kunde, Organisasjonsnummer: '111222333' },
        po: { Name: 'Firma', OrganizationNumber: '999888777', MailAddress: { CountryCode: 'NO' } },
        shadow,
      });
      expect(result.writes.poweroffice).toEqual({ OrganizationNumber: '111222333' });
    });

    it('is ignored both ways for a foreign customer', () => {
      const tbEdit = diff({
        flow: customer,
        tb: { ...kunde, Organisasjonsnummer: '111222333' },
        po: {
          Name: 'Firma',
          OrganizationNumber: 'SE5566778899',
          MailAddress: { CountryCode: 'SE' },
        },
        shadow,
      });
      expect(isEmptyDiff(tbEdit)).toBe(true);
      const first = diff({
        flow: customer,
        tb: { Id: 'K1', Navn: 'Firma' },
        po: {
          Name: 'Firma',
          OrganizationNumber: 'SE5566778899',
          MailAddress: { CountryCode: 'SE' },
        },
        shadow: undefined,
      });
      expect(first.writes).toEqual({ tidsbanken: {}, poweroffice: {} });
      expect(first.shadow).not.toHaveProperty('Organisasjonsnummer');
    });
  });
});

// ---- convergence --------------------------------------------------------------------------

/** Both records agree on every mapped field that applies (in its comparable form). */
function agreement(f: FlowDefinition, tb: Rec, po: Rec): [string, unknown, unknown][] {
  const out: [string, unknown, unknown][] = [];
  for (const m of f.fields) {
    if (!fieldApplies(m, po)) continue;
    if (m.direction === 'to-poweroffice') continue; // PowerOffice reads it back as hidden
    const t = normalizeValue(m.kind, tb[m.tidsbanken]);
    let p = normalizeValue(m.kind, getPath(po, m.poweroffice));
    if (m.invert && typeof p === 'boolean') p = !p;
    if (t === UNKNOWN || p === UNKNOWN) continue;
    if (t !== p) out.push([m.key, t, p]);
  }
  return out;
}

describe('diffLink: convergence', () => {
  it('diffing twice in a row (apply writes, feed the echoes) writes nothing the second time', () => {
    const tb = { ...tbKari, Tittel: 'Leder', Mobil: '' };
    const po = structuredClone(poKari);
    po.MailAddress.City = 'Bergen';
    po.FirstName = 'KARI';
    const first = diff({ tb, po, shadow: { ...shadowKari } });
    expect(first.writes).toEqual({
      tidsbanken: { Poststed: 'Bergen', Fornavn: 'KARI' },
      poweroffice: { Title: 'Leder', PhoneNumber: null },
    });
    const landed = apply(tb, po, first);
    const second = diff({ ...landed, shadow: first.shadow, inflight: first.inflight });
    expect(isEmptyDiff(second)).toBe(true);
    expect(second.shadow).toEqual(first.shadow);
    expect(inflightKeys(second.inflight)).toEqual({ tidsbanken: [], poweroffice: [] });
    expect(agreement(contact, landed.tb, landed.po)).toEqual([]);
  });

  // Was a bug (fixed): write() records an in-flight entry for NationalIdNumber, but a
  // one-way field is read from PowerOffice as UNKNOWN, so its echo is never seen and the
  // entry (and any command id on it) stays on the link forever.
  it('an Employee link converges from a first sync, and the Personnummer in-flight entry clears', () => {
    const tb = { Id: 7, Fornavn: 'Kari', Aktiv: true, Personnummer: '01019012345' };
    const po = { Number: 7, LastName: 'Nordmann', IsArchived: false, NationalIdNumber: 'hidden' };
    const first = diff({ flow: employee, tb, po, shadow: undefined });
    const landed = apply(tb, po, first);
    landed.po.NationalIdNumber = 'hidden'; // how PowerOffice reads it back
    const second = diff({
      flow: employee,
      ...landed,
      shadow: first.shadow,
      inflight: first.inflight,
    });
    expect(isEmptyDiff(second)).toBe(true);
    expect(agreement(employee, landed.tb, landed.po)).toEqual([]);
    // The echo of a one-way field can never be seen; nothing should wait for it forever.
    expect(inflightKeys(second.inflight)).toEqual({ tidsbanken: [], poweroffice: [] });
  });

  // Values chosen to collide: case variants, blanks, equal after normalization.
  const text = fc.constantFrom(null, '', '  ', 'a', 'A', ' a ', 'b', 'c');
  const email = fc.constantFrom(null, '', 'x@y.no', 'X@Y.no', 'z@y.no');
  const date = fc.constantFrom(null, '2020-01-01', '2020-01-01T00:00:00Z', '2021-02-03');
  const bool = fc.constantFrom(null, true, false);
  const nid = fc.constantFrom(null, '01019012345', '010190 12345', '31129954321');
  const country = fc.constantFrom(undefined, null, '', 'NO', 'SE');

  function arbValue(kind: string): fc.Arbitrary<unknown> {
    switch (kind) {
      case 'email':
        return email;
      case 'date':
        return date;
      case 'boolean':
        return bool;
      case 'national_id':
        return nid;
      default:
        return text;
    }
  }

  /** Random edits: for each mapped field, maybe a new value on that side. */
  function arbEdits(f: FlowDefinition) {
    const one = fc.record(
      Object.fromEntries(
        f.fields.map((m) => [m.key, fc.option(arbValue(m.kind), { nil: undefined })]),
      ),
    );
    return fc.record({ tb: one, po: one, country });
  }

  function withEdits(
    f: FlowDefinition,
    tb: Rec,
    po: Rec,
    edits: Record<string, unknown>,
    side: 'tb' | 'po',
  ) {
    const nextTb = structuredClone(tb);
    const nextPo = structuredClone(po);
    for (const m of f.fields) {
      const v = edits[m.key];
      if (v === undefined) continue;
      if (side === 'tb') nextTb[m.tidsbanken] = v;
      else setPath(nextPo, m.poweroffice, m.kind === 'national_id' ? 'hidden' : v);
    }
    return { tb: nextTb, po: nextPo };
  }

  /** A mapped field's comparable value on one side (PowerOffice booleans un-inverted). */
  function comparable(m: FieldMapping, side: 'tb' | 'po', record: Rec): unknown {
    if (side === 'tb') return normalizeValue(m.kind, record[m.tidsbanken]);
    const p = normalizeValue(m.kind, getPath(record, m.poweroffice));
    return m.invert && typeof p === 'boolean' ? !p : p;
  }

  // Every flow of the flow table, every policy. Each round edits both sides at random and
  // stamps them with random times, so either side may be the newer one. From the second round
  // on (both sides agreed before it), a model says what must happen to every two-way field:
  // an edit on one side only is copied to the other; different edits on both sides are a
  // conflict that the policy's winner wins — for newest-wins the side with the later time.
  for (const f of FLOWS) {
    for (const policy of ['newest-wins', 'tidsbanken-wins', 'poweroffice-wins'] as const) {
      it(`${f.id}, ${policy}: random edits on both sides, either side newer: the policy's winner wins, writes land, converge`, () => {
        const wins = { tidsbanken: 0, poweroffice: 0 };
        fc.assert(
          fc.property(
            fc.array(fc.tuple(arbEdits(f), fc.integer({ min: -1500, max: 1500 })), {
              minLength: 1,
              maxLength: 4,
            }),
            fc.boolean(),
            (rounds, firstSyncWithShadow) => {
              let tb: Rec = { Id: 7 };
              let po: Rec = { Number: 7 };
              let shadow: Shadow | undefined = firstSyncWithShadow ? {} : undefined;
              let inflight: Inflight = {};
              let clock = T0;
              for (const [i, [round, poLead]] of rounds.entries()) {
                const agreed = i > 0 ? structuredClone(tb) : undefined;
                ({ tb } = withEdits(f, tb, po, round.tb, 'tb'));
                ({ po } = withEdits(f, tb, po, round.po, 'po'));
                if (round.country !== undefined) {
                  setPath(po, 'MailAddress.CountryCode', round.country);
                }
                const edited = { tb: structuredClone(tb), po: structuredClone(po) };
                clock += 5000;
                const tbAt = clock;
                const poAt = clock + poLead;
                const result = diffLink({
                  flow: f,
                  tidsbanken: { record: tb, updatedAt: tbAt },
                  poweroffice: { record: po, updatedAt: poAt },
                  shadow,
                  inflight,
                  policy,
                  ...linkedToItself,
                });
                const winner =
                  policy === 'tidsbanken-wins'
                    ? 'tidsbanken'
                    : policy === 'poweroffice-wins'
                      ? 'poweroffice'
                      : poAt > tbAt
                        ? 'poweroffice'
                        : 'tidsbanken';
                for (const c of result.conflicts) {
                  expect(c.winner).toBe(winner);
                  wins[c.winner]++;
                }
                ({ tb, po } = apply(tb, po, result));
                if (f.id === 'ansatt-employee') po.NationalIdNumber = 'hidden';

                if (agreed !== undefined) {
                  const modelled = f.fields.filter(
                    (m) =>
                      m.direction === 'both' &&
                      fieldApplies(m, po) &&
                      (m.when === undefined || round.country === undefined),
                  );
                  const expectedConflicts: string[] = [];
                  for (const m of modelled) {
                    const before = comparable(m, 'tb', agreed);
                    const t = comparable(m, 'tb', edited.tb);
                    const p = comparable(m, 'po', edited.po);
                    let expected = t;
                    if (t === before) expected = p;
                    else if (p !== before && p !== t) {
                      expectedConflicts.push(m.key);
                      expected = winner === 'tidsbanken' ? t : p;
                    }
                    expect([m.key, comparable(m, 'tb', tb)]).toEqual([m.key, expected]);
                    expect([m.key, comparable(m, 'po', po)]).toEqual([m.key, expected]);
                  }
                  const keys = new Set(modelled.map((m) => m.key));
                  expect(
                    result.conflicts
                      .map((c) => c.key)
                      .filter((k) => keys.has(k))
                      .sort(),
                  ).toEqual(expectedConflicts.sort());
                }

                shadow = result.shadow;
                inflight = result.inflight;
                // The echoes come back: nothing more to do.
                const echo = diffLink({
                  flow: f,
                  tidsbanken: { record: tb, updatedAt: clock + 2000 },
                  poweroffice: { record: po, updatedAt: clock + 2000 },
                  shadow,
                  inflight,
                  policy,
                  ...linkedToItself,
                });
                expect(echo.writes).toEqual({ tidsbanken: {}, poweroffice: {} });
                expect(echo.conflicts).toEqual([]);
                expect(agreement(f, tb, po)).toEqual([]);
                shadow = echo.shadow;
                inflight = echo.inflight;
              }
            },
          ),
          { numRuns: 200 },
        );
        // Each side must really have won conflicts where the policy lets it.
        if (policy !== 'poweroffice-wins') expect(wins.tidsbanken).toBeGreaterThan(0);
        if (policy !== 'tidsbanken-wins') expect(wins.poweroffice).toBeGreaterThan(0);
      });
    }
  }
});

describe('diffLink: a write superseded while the first one is already on its way', () => {
  // Tidsbanken Tittel Regnskap → Leder: "Leder" is sent to PowerOffice and lands there.
  // Before PowerOffice is read again, Tidsbanken changes Leder → Direktør: "Direktør" is
  // queued. Then PowerOffice is read and shows "Leder" — the echo of our first write.
  // Was a bug (fixed): write() adds only the target's current read to `stale`, not the
  // value of the earlier write it supersedes; the landed earlier write reads as a new edit,
  // a conflict, and under newest-wins / poweroffice-wins it drops "Direktør" and writes
  // "Leder" back to Tidsbanken (the newest edit is lost).
  it('the echo of the earlier write is no edit: no conflict, the newer write stands', () => {
    const tbLeder = { ...tbKari, Tittel: 'Leder' };
    const first = diff({ tb: tbLeder, po: structuredClone(poKari), shadow: { ...shadowKari } });
    expect(first.writes.poweroffice).toEqual({ Title: 'Leder' });

    const tbDirektor = { ...tbKari, Tittel: 'Direktør' };
    const second = diff({
      tb: tbDirektor,
      po: structuredClone(poKari), // the mirror has not seen the landed write yet
      shadow: first.shadow,
      inflight: first.inflight,
      tbAt: T0 + 10_000,
    });
    expect(second.writes.poweroffice).toEqual({ Title: 'Direktør' });

    const poLeder = structuredClone(poKari);
    poLeder.Title = 'Leder'; // our first write, landed (PowerOffice stamps it later)
    const third = diff({
      tb: tbDirektor,
      po: poLeder,
      shadow: second.shadow,
      inflight: second.inflight,
      tbAt: T0 + 10_000,
      poAt: T0 + 20_000,
    });
    expect(third.conflicts).toEqual([]);
    expect(third.drops).toEqual({ tidsbanken: [], poweroffice: [] });
    expect(third.writes).toEqual({ tidsbanken: {}, poweroffice: {} });
    expect(third.shadow.Tittel).toBe('Direktør');
  });
});

// ---- a model of the worker: reads lag behind, writes queue, coalesce and land later --------

type Side = 'tidsbanken' | 'poweroffice';
type Action =
  | { kind: 'edit'; side: Side; key: string; value: unknown }
  | { kind: 'read'; side: Side }
  | { kind: 'send'; side: Side };

interface World {
  real: Record<Side, Rec>;
  realAt: Record<Side, number>;
  mirror: Record<Side, Rec>;
  mirrorAt: Record<Side, number>;
  shadow: Shadow | undefined;
  inflight: Inflight;
  /** The one unsent command per target: newer writes coalesce into it, drops take fields out. */
  pending: Record<Side, Rec | undefined>;
  conflicts: number;
  clock: number;
}

function newWorld(tb: Rec, po: Rec, shadow: Shadow | undefined): World {
  return {
    real: { tidsbanken: structuredClone(tb), poweroffice: structuredClone(po) },
    realAt: { tidsbanken: T0, poweroffice: T0 },
    mirror: { tidsbanken: structuredClone(tb), poweroffice: structuredClone(po) },
    mirrorAt: { tidsbanken: T0, poweroffice: T0 },
    shadow,
    inflight: {},
    pending: { tidsbanken: undefined, poweroffice: undefined },
    conflicts: 0,
    clock: T0,
  };
}

function step(w: World, f: FlowDefinition, policy: ConflictPolicy, a: Action): DiffResult | void {
  switch (a.kind) {
    case 'edit': {
      const m = f.fields.find((x) => x.key === a.key)!;
      if (a.side === 'tidsbanken') w.real.tidsbanken[m.tidsbanken] = a.value;
      else setPath(w.real.poweroffice, m.poweroffice, a.value);
      w.realAt[a.side] = w.clock += 1000;
      return;
    }
    case 'send': {
      const cmd = w.pending[a.side];
      if (cmd === undefined) return;
      for (const [k, v] of Object.entries(cmd)) {
        if (a.side === 'tidsbanken') w.real.tidsbanken[k] = v;
        else setPath(w.real.poweroffice, k, v);
      }
      w.pending[a.side] = undefined;
      w.realAt[a.side] = w.clock += 1000;
      // As the dispatcher does on success: the in-flight entries of the fields it wrote learn
      // the side's change time of the state the write produced.
      for (const k of Object.keys(cmd)) {
        const field = f.fields.find(
          (x) => (a.side === 'tidsbanken' ? x.tidsbanken : x.poweroffice) === k,
        );
        const entry = field && w.inflight[a.side]?.[field.key];
        if (entry !== undefined) entry.landed = new Date(w.realAt[a.side]).toISOString();
      }
      return;
    }
    case 'read': {
      w.mirror[a.side] = structuredClone(w.real[a.side]);
      // PowerOffice never shows a national id back: it reads "hidden".
      if (a.side === 'poweroffice') {
        for (const m of f.fields) {
          if (m.kind === 'national_id' && getPath(w.real.poweroffice, m.poweroffice) != null) {
            setPath(w.mirror.poweroffice, m.poweroffice, 'hidden');
          }
        }
      }
      w.mirrorAt[a.side] = w.realAt[a.side];
      const result = diffLink({
        flow: f,
        tidsbanken: { record: w.mirror.tidsbanken, updatedAt: w.mirrorAt.tidsbanken },
        poweroffice: { record: w.mirror.poweroffice, updatedAt: w.mirrorAt.poweroffice },
        shadow: w.shadow,
        inflight: w.inflight,
        policy,
        ...linkedToItself,
      });
      w.shadow = result.shadow;
      w.inflight = result.inflight;
      w.conflicts += result.conflicts.length;
      for (const side of ['tidsbanken', 'poweroffice'] as const) {
        const cmd = w.pending[side];
        if (cmd !== undefined) for (const k of result.drops[side]) delete cmd[k];
        if (Object.keys(result.writes[side]).length > 0) {
          w.pending[side] = { ...(w.pending[side] ?? {}), ...result.writes[side] };
        }
      }
      return result;
    }
  }
}

/** Deliver everything and read both sides until nothing moves; false if it never settles. */
function settle(w: World, f: FlowDefinition, policy: ConflictPolicy): boolean {
  for (let i = 0; i < 10; i++) {
    step(w, f, policy, { kind: 'send', side: 'tidsbanken' });
    step(w, f, policy, { kind: 'send', side: 'poweroffice' });
    const a = step(w, f, policy, { kind: 'read', side: 'tidsbanken' });
    const b = step(w, f, policy, { kind: 'read', side: 'poweroffice' });
    if (
      a &&
      b &&
      isEmptyDiff(a) &&
      isEmptyDiff(b) &&
      !w.pending.tidsbanken &&
      !w.pending.poweroffice
    )
      return true;
  }
  return false;
}

describe('diffLink: a worker with lagging reads and queued writes (model-based)', () => {
  const f = contact;
  const run = (policy: ConflictPolicy, script: Action[]) => {
    const w = newWorld(tbKari, poKari, { ...shadowKari });
    for (const a of script) step(w, f, policy, a);
    expect(settle(w, f, policy)).toBe(true);
    return w;
  };

  it('a Tidsbanken edit queued, sent and echoed: both agree, no conflict', () => {
    const w = run('newest-wins', [
      { kind: 'edit', side: 'tidsbanken', key: 'Tittel', value: 'Leder' },
      { kind: 'read', side: 'tidsbanken' },
      { kind: 'read', side: 'poweroffice' }, // before the write landed
      { kind: 'send', side: 'poweroffice' },
      { kind: 'read', side: 'poweroffice' },
    ]);
    expect(w.real.poweroffice.FirstName).toBe('Kari');
    expect(w.real.poweroffice.Title).toBe('Leder');
    expect(w.conflicts).toBe(0);
    expect(inflightKeys(w.inflight)).toEqual({ tidsbanken: [], poweroffice: [] });
  });

  // Was a bug (fixed): when the queued value wins (`winner === other`), diffLink only marks
  // the arriving value stale and assumes the queued command will still overwrite it. Here
  // that command had already landed before PowerOffice was edited, so nothing ever does:
  // Tidsbanken keeps "a", PowerOffice keeps "c", and the shadow says "a" (agreed) forever.
  it('tidsbanken-wins: a PowerOffice edit made after our write landed is overwritten', () => {
    const w = run('tidsbanken-wins', [
      { kind: 'edit', side: 'tidsbanken', key: 'Fornavn', value: 'a' },
      { kind: 'read', side: 'tidsbanken' },
      { kind: 'send', side: 'poweroffice' },
      { kind: 'edit', side: 'poweroffice', key: 'Fornavn', value: 'c' },
    ]);
    expect(agreement(f, w.real.tidsbanken, w.real.poweroffice)).toEqual([]);
    expect(w.real.poweroffice.FirstName).toBe('a');
  });

  // Was a bug (fixed): an edit back to the pre-write value (ABA), made after our write
  // landed and read before its echo was seen, matches `stale` and is taken for a read from
  // before the write: it is never synced. Tidsbanken Aktiv=false, PowerOffice IsActive=true,
  // shadow Aktiv=false, forever. A `stale` value needs a bound (e.g. the target's updatedAt
  // when the write was queued: a later read is not from before the write).
  it('newest-wins: re-activating in PowerOffice after our deactivation landed is synced', () => {
    const w = run('newest-wins', [
      { kind: 'edit', side: 'tidsbanken', key: 'Aktiv', value: false },
      { kind: 'read', side: 'tidsbanken' },
      { kind: 'send', side: 'poweroffice' },
      { kind: 'edit', side: 'poweroffice', key: 'Aktiv', value: true },
    ]);
    expect(agreement(f, w.real.tidsbanken, w.real.poweroffice)).toEqual([]);
    expect(w.real.tidsbanken.Aktiv).toBe(true);
  });
});

// The same model over every flow of the flow table and every field it maps, so a flow added
// to src/sync/flows.ts is covered here without a change to this file.

/** Values per kind, chosen to collide (case variants, blanks, equal after normalization). */
function modelValues(kind: string): fc.Arbitrary<unknown> {
  switch (kind) {
    case 'boolean':
      return fc.constantFrom(true, false, null);
    case 'email':
      return fc.constantFrom('k@x.no', 'K@X.no', 'l@x.no', '');
    case 'date':
      return fc.constantFrom('2020-01-01', '2020-01-01T00:00:00Z', '2021-02-03', null);
    case 'national_id':
      return fc.constantFrom('01019012345', '010190 12345', '31129954321', null);
    default:
      return fc.constantFrom('a', 'b', 'c', '', ' a');
  }
}

/** A first value per kind for the agreed starting records. */
function startValue(kind: string): unknown {
  switch (kind) {
    case 'boolean':
      return true;
    case 'email':
      return 'start@x.no';
    case 'date':
      return '2019-05-06';
    case 'national_id':
      return '05059912345';
    default:
      return 'start';
  }
}

/** Both records agreeing on every mapped field, and the shadow their first sync agrees on. */
function agreedStart(fl: FlowDefinition): { tb: Rec; po: Rec; shadow: Shadow } {
  const tb: Rec = { Id: 7 };
  const po: Rec = { Id: 500 };
  for (const m of fl.fields) {
    const v = startValue(m.kind);
    tb[m.tidsbanken] = v;
    setPath(po, m.poweroffice, m.invert && typeof v === 'boolean' ? !v : v);
  }
  const sync = (shadow: Shadow | undefined, inflight: Inflight, t: Rec, p: Rec) =>
    diffLink({
      flow: fl,
      tidsbanken: { record: t, updatedAt: T0 },
      poweroffice: { record: p, updatedAt: T0 },
      shadow,
      inflight,
      policy: 'newest-wins',
      ...linkedToItself,
    });
  // A one-way field is never read from PowerOffice, so the first sync writes it once.
  const first = sync(undefined, {}, tb, po);
  const landed = apply(tb, po, first);
  const echo = sync(first.shadow, first.inflight, landed.tb, landed.po);
  expect(isEmptyDiff(echo)).toBe(true);
  expect(inflightKeys(echo.inflight)).toEqual({ tidsbanken: [], poweroffice: [] });
  return { tb: landed.tb, po: landed.po, shadow: echo.shadow };
}

for (const fl of FLOWS) {
  describe(`diffLink: the worker model over every field of ${fl.id}`, () => {
    const start = agreedStart(fl);
    const editable = (side: Side) =>
      fl.fields.filter((m) => side === 'tidsbanken' || m.direction === 'both');
    const edit = (sides: Side[]) =>
      fc.constantFrom(...sides).chain((side) =>
        fc.constantFrom(...editable(side)).chain((m) =>
          modelValues(m.kind).map((value): Action => ({
            kind: 'edit',
            side,
            key: m.key,
            value,
          })),
        ),
      );
    const io = fc.record({
      kind: fc.constantFrom('read' as const, 'send' as const),
      side: fc.constantFrom<Side>('tidsbanken', 'poweroffice'),
    });
    const actions = (sides: Side[]) =>
      fc.array(fc.oneof(edit(sides), io as fc.Arbitrary<Action>), { maxLength: 25 });
    const world = () => newWorld(start.tb, start.po, { ...start.shadow });

    /** Every mapped field was edited in some generated script: the model covers them all. */
    function expectAllEdited(edited: Set<string>, side: Side) {
      expect([...edited].sort()).toEqual(
        editable(side)
          .map((m) => m.key)
          .sort(),
      );
    }

    for (const policy of ['newest-wins', 'tidsbanken-wins', 'poweroffice-wins'] as const) {
      it(`${policy}: whatever the interleaving, both sides settle on the same values`, () => {
        const edited = new Set<string>();
        fc.assert(
          fc.property(actions(['tidsbanken', 'poweroffice']), (script) => {
            const w = world();
            for (const a of script) {
              if (a.kind === 'edit') edited.add(a.key);
              step(w, fl, policy, a);
            }
            expect(settle(w, fl, policy)).toBe(true);
            expect(agreement(fl, w.real.tidsbanken, w.real.poweroffice)).toEqual([]);
          }),
          { numRuns: 200 },
        );
        expectAllEdited(edited, 'tidsbanken');
      });
    }

    for (const side of ['tidsbanken', 'poweroffice'] as const) {
      const other: Side = side === 'tidsbanken' ? 'poweroffice' : 'tidsbanken';
      it(`edits in ${side} only: never a conflict, and ${other} ends at the last edit of every field`, () => {
        const edited = new Set<string>();
        fc.assert(
          fc.property(actions([side]), (script) => {
            const w = world();
            for (const a of script) {
              if (a.kind === 'edit') edited.add(a.key);
              step(w, fl, 'newest-wins', a);
            }
            expect(settle(w, fl, 'newest-wins')).toBe(true);
            expect(w.conflicts).toBe(0);
            for (const m of editable(side)) {
              if (!fieldApplies(m, w.real.poweroffice)) continue;
              const t = normalizeValue(m.kind, w.real.tidsbanken[m.tidsbanken]);
              let p = normalizeValue(m.kind, getPath(w.real.poweroffice, m.poweroffice));
              if (m.invert && typeof p === 'boolean') p = !p;
              expect([m.key, p]).toEqual([m.key, t]);
            }
            const last = pickEdits(script, side);
            for (const m of editable(side)) {
              if (!(m.key in last)) continue;
              const held =
                side === 'tidsbanken'
                  ? w.real.tidsbanken[m.tidsbanken]
                  : getPath(w.real.poweroffice, m.poweroffice);
              expect([m.key, held]).toEqual([m.key, last[m.key]]);
            }
          }),
          { numRuns: 200 },
        );
        expectAllEdited(edited, side);
      });
    }
  });
}

function pickEdits(script: Action[], side: Side): Rec {
  const out: Rec = {};
  for (const a of script) if (a.kind === 'edit' && a.side === side) out[a.key] = a.value;
  return out;
}

describe('reference fields (prosjekt-project)', () => {
  const project = flow('prosjekt-project');
  // kunde-customer links K1↔100, K2↔200; ansatt-employee links 7↔70.
  const links: Record<string, [string, string][]> = {
    'kunde-customer': [
      ['K1', '100'],
      ['K2', '200'],
    ],
    'ansatt-employee': [['7', '70']],
  };
  const translate = (f: string, to: 'tidsbanken' | 'poweroffice', id: string) =>
    links[f]?.find((pair) => pair[to === 'tidsbanken' ? 1 : 0] === id)?.[
      to === 'tidsbanken' ? 0 : 1
    ];
  const run = (tb: Rec, po: Rec, shadow?: Shadow, withLinks = true) =>
    diffLink({
      flow: project,
      tidsbanken: { record: { Id: 'P1', ...tb }, updatedAt: T0 },
      poweroffice: { record: { Id: 5, Code: 'P1', ...po }, updatedAt: T0 },
      shadow,
      inflight: {},
      policy: 'newest-wins',
      ...(withLinks ? { translate } : {}),
    });

  it('first sync writes the linked counterpart ids, never the raw ones', () => {
    const r = run({ KundeId: 'K1', AnsvarligId: 7 }, {});
    expect(r.writes.poweroffice).toEqual({ CustomerId: '100', ProjectManagerEmployeeId: '70' });
    expect(r.shadow).toMatchObject({ KundeId: 'K1', AnsvarligId: '7' });
    expect(r.unresolved).toEqual([]);
    const back = run({}, { CustomerId: 200, ProjectManagerEmployeeId: 70 });
    expect(back.writes.tidsbanken).toEqual({ KundeId: 'K2', AnsvarligId: '7' });
  });

  it('an edit on either side is translated; the same record on both sides is no change', () => {
    const shadow = { KundeId: 'K1', AnsvarligId: '7' };
    expect(
      run(
        { KundeId: 'K1', AnsvarligId: 7 },
        { CustomerId: 100, ProjectManagerEmployeeId: 70 },
        shadow,
      ).writes,
    ).toEqual({ tidsbanken: {}, poweroffice: {} });
    expect(run({ KundeId: 'K1' }, { CustomerId: 200 }, shadow).writes.tidsbanken).toEqual({
      KundeId: 'K2',
    });
    expect(
      run(
        { KundeId: 'K2', AnsvarligId: 7 },
        { CustomerId: 100, ProjectManagerEmployeeId: 70 },
        shadow,
      ).writes.poweroffice,
    ).toEqual({ CustomerId: '200' });
  });

  it('cleared on one side clears the other', () => {
    const shadow = { KundeId: 'K1' };
    expect(run({ KundeId: '' }, { CustomerId: 100 }, shadow).writes.poweroffice).toEqual({
      CustomerId: null,
    });
    expect(run({ KundeId: 'K1' }, { CustomerId: null }, shadow).writes.tidsbanken).toEqual({
      KundeId: null,
    });
  });

  it('holds a reference to an unlinked record back: no write, shadow kept, reported', () => {
    const shadow = { KundeId: 'K1', AnsvarligId: '7' };
    const r = run(
      { KundeId: 'K9', AnsvarligId: 7 },
      { CustomerId: 100, ProjectManagerEmployeeId: 999 },
      shadow,
    );
    expect(r.writes).toEqual({ tidsbanken: {}, poweroffice: {} });
    expect(r.shadow).toMatchObject(shadow);
    expect(r.shadow).not.toHaveProperty('KundeId', 'K9');
    expect(r.unresolved).toEqual([
      { key: 'KundeId', flow: 'kunde-customer', system: 'tidsbanken', id: 'K9' },
      { key: 'AnsvarligId', flow: 'ansatt-employee', system: 'poweroffice', id: '999' },
    ]);
    // Without any links at all, every set reference waits.
    expect(run({ KundeId: 'K1' }, {}, undefined, false).unresolved).toHaveLength(1);
  });

  it('an unchanged Tidsbanken id that lost its link does not stop a PowerOffice edit', () => {
    const r = run({ KundeId: 'K8' }, { CustomerId: 200 }, { KundeId: 'K8' });
    expect(r.writes.tidsbanken).toEqual({ KundeId: 'K2' });
    expect(r.unresolved).toEqual([]);
  });
});
