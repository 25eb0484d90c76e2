// Sync benchmark (bench/README.md, "sync").
//
//   npx tsx bench/sync/run.ts            # full: 200 latency samples ×2, 1000 paced, 100×10 coalesced
//   npx tsx bench/sync/run.ts --quick    # 100 ×2, 200 paced, 50×10 coalesced (BENCH_QUICK=1)
//   env: DATABASE_URL (server; default postgres://postgres@127.0.0.1:5432/postgres),
//        BENCH_LOG_LEVEL (unset: service logs go to /dev/null at info)
//
// Three parts, each on a fresh PostgreSQL database with the whole service in this process
// (createService + createApp, main.ts's defaults) against the two fakes over loopback:
//   latency    signed `ansatt.updated` webhook (full record) accepted → the PATCH arriving at
//              the fake PowerOffice (its request log `at`, same clock), unthrottled;
//   pace       N queued changes against PowerOffice's 10/s (fake and service at 10/s):
//              achieved rate / limit from the fake's arrival times, 429s served;
//   coalesce   K linked records each edited 10 times while PowerOffice is paced at 10/s:
//              PATCHes per record, and that the last edit is what PowerOffice holds.
import { writeFile } from 'node:fs/promises';
import { startFakePowerOffice, type FakePowerOffice } from '../../test/fakes/poweroffice.js';
import { startFakeTidsbanken, type FakeTidsbanken } from '../../test/fakes/tidsbanken.js';
import { fmt, machine, percentile, postWebhook, runBench, table, waitFor } from '../lib/common.js';
import { startInProcessService, type InProcessService } from '../lib/in-process.js';

const QUICK = process.argv.includes('--quick') || process.env.BENCH_QUICK === '1';
const SIZES = QUICK
  ? { latency: 100, pace: 200, coalesceRecords: 50, edits: 10 }
  : { latency: 200, pace: 1000, coalesceRecords: 100, edits: 10 };
const UNTHROTTLED = 100_000;

interface Rig {
  tb: FakeTidsbanken;
  po: FakePowerOffice;
  svc: InProcessService;
  /** Ansatt Id → linked Employee Id. */
  employeeOf: Map<number, number>;
  close(): Promise<void>;
}

/** N Ansatte and N Employees that link one-to-one (Id = Number) and agree on every field. */
async function startRig(n: number, poRate: number, label: string): Promise<Rig> {
  const tb = await startFakeTidsbanken({ rateLimitPerSecond: UNTHROTTLED });
  const po = await startFakePowerOffice({ rateLimitPerSecond: poRate });
  for (let i = 1; i <= n; i++) {
    tb.seedAnsatt({ Id: i, Fornavn: `Ansatt${i}`, Etternavn: 'Bench', Epost: `a${i}@bench.no` });
    po.seedEmployee({
      Number: i,
      FirstName: `Ansatt${i}`,
      LastName: 'Bench',
      EmailAddress: `a${i}@bench.no`,
    });
  }
  const svc = await startInProcessService({
    tb,
    po,
    prefix: `tbpo_bench_sync_${label}`,
    env: {
      TIDSBANKEN_RATE_LIMIT_PER_SECOND: '1000',
      POWEROFFICE_RATE_LIMIT_PER_SECOND: String(Math.min(poRate, 1000)),
    },
  });
  const linked = async () =>
    Number(
      (
        await svc.database.db
          .selectFrom('links')
          .select((eb) => eb.fn.countAll<string>().as('n'))
          .where('flow', '=', 'ansatt-employee')
          .where('unlinked_at', 'is', null)
          .executeTakeFirst()
      )?.n ?? 0,
    ) >= n;
  await waitFor(`${n} links`, linked, 120_000, 100);
  await svc.settle(120_000);
  const employeeOf = new Map<number, number>();
  for (const [id, e] of po.employees) employeeOf.set(e.Number as number, id);
  return {
    tb,
    po,
    svc,
    employeeOf,
    async close() {
      await svc.close();
      await tb.close();
      await po.close();
    },
  };
}

/** Edits the Ansatt in the fake (as a user would) and sends its full record as a webhook. */
async function editAndSend(rig: Rig, id: number, patch: Record<string, unknown>): Promise<void> {
  rig.tb.editAnsatt(id, patch);
  const status = await postWebhook(
    `${rig.svc.url}/webhooks/tidsbanken`,
    rig.svc.secret,
    'ansatt.updated',
    rig.tb.getAnsatt(id)!,
  );
  if (status !== 202) throw new Error(`webhook answered ${status}`);
}

function patchCarrying(
  po: FakePowerOffice,
  employeeId: number,
  value: string,
): { at: number; status: number } | undefined {
  const path = `/v2/Employees/${employeeId}`;
  return po.requests.find(
    (r) =>
      r.method === 'PATCH' &&
      r.path === path &&
      r.status >= 200 &&
      r.status < 300 &&
      Array.isArray(r.body) &&
      (r.body as { value?: unknown }[]).some((op) => op.value === value),
  );
}

async function pool<T>(items: T[], concurrency: number, fn: (item: T) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

async function latency() {
  const n = SIZES.latency;
  const rig = await startRig(n, UNTHROTTLED, 'latency');
  try {
    const measure = async (label: string, concurrency: number) => {
      const sent = new Map<number, { t0: number; ack: number; value: string }>();
      const ids = Array.from({ length: n }, (_, i) => i + 1);
      await pool(ids, concurrency, async (id) => {
        const value = `${label}-${id}`;
        const t0 = performance.now();
        await editAndSend(rig, id, { Tittel: value });
        const ack = performance.now() - t0;
        sent.set(id, { t0, ack, value });
        // Sequential: the next change starts when this one has reached PowerOffice.
        if (concurrency === 1)
          await waitFor(
            `PATCH ${value}`,
            () => patchCarrying(rig.po, rig.employeeOf.get(id)!, value) !== undefined,
            30_000,
            2,
          );
      });
      await waitFor(
        `${n} PATCHes (${label})`,
        () =>
          ids.every(
            (id) =>
              patchCarrying(rig.po, rig.employeeOf.get(id)!, sent.get(id)!.value) !== undefined,
          ),
        120_000,
        20,
      );
      const ms = ids.map((id) => {
        const s = sent.get(id)!;
        return patchCarrying(rig.po, rig.employeeOf.get(id)!, s.value)!.at - s.t0;
      });
      const acks = ids.map((id) => sent.get(id)!.ack);
      return {
        label,
        concurrency,
        samples: n,
        p50: percentile(ms, 50),
        p95: percentile(ms, 95),
        max: percentile(ms, 100),
        ackP50: percentile(acks, 50),
        ackP95: percentile(acks, 95),
      };
    };
    const sequential = await measure('seq', 1);
    await rig.svc.settle(60_000);
    const concurrent = await measure('conc', 20);
    return { sequential, concurrent };
  } finally {
    await rig.close();
  }
}

async function pace() {
  const n = SIZES.pace;
  const limit = 10;
  const rig = await startRig(n, limit, 'pace');
  try {
    const startSeq = rig.po.requests.length;
    // Queue every change at once (webhooks need no PowerOffice call), then watch them drain.
    await pool(
      Array.from({ length: n }, (_, i) => i + 1),
      20,
      (id) => editAndSend(rig, id, { Tittel: `pace-${id}` }),
    );
    await waitFor(
      `${n} paced PATCHes`,
      () =>
        rig.po.requests
          .slice(startSeq)
          .filter((r) => r.method === 'PATCH' && r.status >= 200 && r.status < 300).length >= n,
      (n / limit) * 1000 * 2 + 60_000,
      200,
    );
    const reqs = rig.po.requests.slice(startSeq);
    const patches = reqs.filter((r) => r.method === 'PATCH').map((r) => r.at);
    // Steady part: drop the first and last 5 % of the PATCHes (ramp-up, tail).
    const trim = Math.floor(patches.length * 0.05);
    const from = patches[trim]!;
    const to = patches[patches.length - 1 - trim]!;
    const inWindow = reqs.filter((r) => r.at >= from && r.at <= to).length;
    const rate = (inWindow - 1) / ((to - from) / 1000);
    // The limit must hold in every sliding second (docs/ARCHITECTURE.md "Pacing").
    const times = reqs.map((r) => r.at).sort((a, b) => a - b);
    let maxInWindow = 0;
    for (let i = 0, j = 0; i < times.length; i++) {
      while (times[i]! - times[j]! >= 1000) j++;
      maxInWindow = Math.max(maxInWindow, i - j + 1);
    }
    return {
      changes: n,
      limit,
      patches: patches.length,
      requests: reqs.length,
      rate,
      ratio: rate / limit,
      total429: reqs.filter((r) => r.status === 429).length,
      maxInAnySecond: maxInWindow,
      wallSeconds: (patches[patches.length - 1]! - patches[0]!) / 1000,
    };
  } finally {
    await rig.close();
  }
}

/**
 * `burst`: each record's ten edits back to back (20 records at a time); `interleaved`: ten
 * rounds over all records, so a record's edits are spread over the whole send time.
 */
async function coalesce(order: 'burst' | 'interleaved') {
  const k = SIZES.coalesceRecords;
  const edits = SIZES.edits;
  const rig = await startRig(k, 10, `coalesce_${order}`);
  try {
    const startSeq = rig.po.requests.length;
    const ids = Array.from({ length: k }, (_, i) => i + 1);
    const t0 = performance.now();
    if (order === 'burst') {
      await pool(ids, 20, async (id) => {
        for (let round = 1; round <= edits; round++)
          await editAndSend(rig, id, { Tittel: `c-${id}-${round}` });
      });
    } else {
      for (let round = 1; round <= edits; round++) {
        await pool(ids, 20, (id) => editAndSend(rig, id, { Tittel: `c-${id}-${round}` }));
      }
    }
    const sendSeconds = (performance.now() - t0) / 1000;
    await rig.svc.settle(300_000, 1500);
    const reqs = rig.po.requests.slice(startSeq);
    const perRecord: number[] = [];
    let wrongFinal = 0;
    for (let id = 1; id <= k; id++) {
      const employeeId = rig.employeeOf.get(id)!;
      perRecord.push(
        reqs.filter(
          (r) =>
            r.method === 'PATCH' &&
            r.path === `/v2/Employees/${employeeId}` &&
            r.status >= 200 &&
            r.status < 300,
        ).length,
      );
      if (rig.po.getEmployee(employeeId)?.JobTitle !== `c-${id}-${edits}`) wrongFinal += 1;
    }
    const total = perRecord.reduce((a, b) => a + b, 0);
    return {
      order,
      sendSeconds,
      records: k,
      editsPerRecord: edits,
      patches: total,
      perRecordMean: total / k,
      perRecordMax: Math.max(...perRecord),
      wrongFinal,
      total429: reqs.filter((r) => r.status === 429).length,
    };
  } finally {
    await rig.close();
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  const errors: Record<string, string> = {};
  const attempt = async <T>(name: string, fn: () => Promise<T>): Promise<T | undefined> => {
    process.stderr.write(`sync bench: ${name}…\n`);
    try {
      return await fn();
    } catch (err) {
      errors[name] = err instanceof Error ? err.message : String(err);
      process.stderr.write(`sync bench: ${name} FAILED: ${errors[name]}\n`);
      return undefined;
    }
  };
  const lat = await attempt('latency', latency);
  const pc = await attempt('pace', pace);
  const co = await attempt('coalesce (burst)', () => coalesce('burst'));
  const coi = await attempt('coalesce (interleaved)', () => coalesce('interleaved'));
  const result = {
    at: new Date().toISOString(),
    quick: QUICK,
    sizes: SIZES,
    latency: lat,
    pace: pc,
    coalesce: co,
    coalesceInterleaved: coi,
    errors,
    wallSeconds: Math.round((Date.now() - started) / 1000),
    machine: machine(),
  };
  await writeFile(
    new URL(QUICK ? './last-result-quick.json' : './last-result.json', import.meta.url),
    `${JSON.stringify(result, null, 2)}\n`,
  );
  const rows: (string | number)[][] = [['measure', 'value', 'target']];
  for (const l of lat ? [lat.sequential, lat.concurrent] : []) {
    rows.push([
      `webhook → PATCH latency, ${l.label === 'seq' ? 'sequential' : `${l.concurrency} concurrent`} (${l.samples}), p50 / p95 / max ms`,
      `${fmt(l.p50)} / ${fmt(l.p95)} / ${fmt(l.max)}`,
      '-',
    ]);
    rows.push([`  webhook 202, p50 / p95 ms`, `${fmt(l.ackP50)} / ${fmt(l.ackP95)}`, '-']);
  }
  if (pc) {
    rows.push([
      `pace: ${pc.changes} changes at ${pc.limit}/s, achieved / limit`,
      `${fmt(pc.rate, 2)}/s = ${fmt(pc.ratio, 3)}`,
      '≥ 0.95',
    ]);
    rows.push(['pace: 429s served', pc.total429, '0']);
    rows.push(['pace: most requests in any sliding second', pc.maxInAnySecond, `≤ ${pc.limit}`]);
  }
  for (const c of [co, coi]) {
    if (!c) continue;
    rows.push([
      `coalesce (${c.order}, sent in ${fmt(c.sendSeconds)} s): ${c.records} records × ${c.editsPerRecord} edits, PATCHes per record mean / max`,
      `${fmt(c.perRecordMean, 2)} / ${c.perRecordMax}`,
      '≤ 2',
    ]);
    rows.push([`coalesce (${c.order}): records not holding their last edit`, c.wrongFinal, '0']);
  }
  for (const [name, message] of Object.entries(errors)) rows.push([`${name} FAILED`, message, '-']);
  process.stdout.write(`${table(rows)}\n`);
  process.exitCode = Object.keys(errors).length > 0 ? 1 : 0;
}

runBench(main);
