// Both fake APIs in a process of their own, seeded for one bench scenario, so a bench can
// measure the service's own memory and CPU without the fakes' records in it.
//
//   const fakes = await startFakesProcess({ scenario: 'reconcile', records: 20000, rate: 1000 });
//   fakes.env        → the service's TIDSBANKEN_* / POWEROFFICE_* variables
//   await fakes.stats() → requests each fake answered so far, the fakes' own RSS
//   await fakes.close()
//
// Protocol with the child (BENCH_ROLE=fakes): it prints one JSON line with its URLs and keys
// when seeded; each "stats" line on its stdin is answered with one JSON line; stdin closing
// ends it.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { startFakePowerOffice } from '../../test/fakes/poweroffice.js';
import { startFakeTidsbanken } from '../../test/fakes/tidsbanken.js';
import { fakesEnv } from '../../test/helpers/fakes-env.js';

export interface FakesScenario {
  /**
   * reconcile: N Ansatte, N Kunder, N Employees, N Customers and N/10 contact persons, half of
   * each type matching a counterpart by its merge rule, names differing (a first-sync field
   * conflict per link).
   * first-start: N Kunder and N Customers; 80 % share an e-mail (one pair each), and for
   * `ambiguous` of those a second Customer carries the same e-mail.
   */
  scenario: 'reconcile' | 'first-start';
  records: number;
  /** Requests per second each fake allows. */
  rate: number;
  ambiguous?: number;
}

export interface FakesStats {
  requests: { tidsbanken: number; poweroffice: number };
  rssMiB: number;
}

export interface FakesProcess {
  env: Record<string, string>;
  pid: number;
  stats(): Promise<FakesStats>;
  close(): Promise<void>;
}

export async function startFakesProcess(scenario: FakesScenario): Promise<FakesProcess> {
  const child: ChildProcess = spawn(
    process.execPath,
    ['--import', 'tsx', fileURLToPath(import.meta.url)],
    {
      env: { ...process.env, BENCH_ROLE: 'fakes', BENCH_FAKES: JSON.stringify(scenario) },
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  const lines = createInterface({ input: child.stdout! });
  const waiting: ((line: string) => void)[] = [];
  lines.on('line', (line) => waiting.shift()?.(line));
  const next = () =>
    new Promise<string>((resolve, reject) => {
      waiting.push(resolve);
      child.once('exit', (code) => reject(new Error(`fakes process exited (${code})`)));
    });
  const ready = JSON.parse(await next()) as { env: Record<string, string> };
  return {
    env: ready.env,
    pid: child.pid!,
    async stats() {
      const answer = next();
      child.stdin!.write('stats\n');
      return JSON.parse(await answer) as FakesStats;
    },
    close() {
      return new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.stdin!.end();
      });
    },
  };
}

async function runFakes(scenario: FakesScenario): Promise<void> {
  const tb = await startFakeTidsbanken({ rateLimitPerSecond: scenario.rate });
  const po = await startFakePowerOffice({ rateLimitPerSecond: scenario.rate });
  const N = scenario.records;
  if (scenario.scenario === 'reconcile') {
    const contacts = Math.max(2, Math.floor(N / 10));
    // Half of every type matches a counterpart: Ansatt i ↔ Employee Number i, Kunde i ↔
    // Customer by e-mail, Ansatt i ↔ contact person by e-mail.
    for (let i = 1; i <= N; i++) {
      tb.seedAnsatt({
        Id: i,
        Fornavn: `Ansatt${i}`,
        Etternavn: 'Bench',
        Epost: `ansatt${i}@bench.no`,
      });
      tb.seedKunde({ Id: `K${i}`, Navn: `Kunde ${i}`, Epost: `kunde${i}@bench.no` });
      // Employee Number i matches Ansatt i for even i; the odd ones miss (Number + 10N).
      po.seedEmployee({
        FirstName: `Employee${i}`,
        LastName: 'Bench',
        Number: i % 2 === 0 ? i : i + 10 * N,
        ...(i % 2 === 0 ? {} : { EmailAddress: `employee${i}@bench.no` }),
      });
      po.seedCustomer({
        Name: `Customer ${i}`,
        EmailAddress: i % 2 === 0 ? `kunde${i}@bench.no` : `customer${i}@bench.no`,
      });
    }
    const customerIds = [...po.customers.keys()];
    for (let i = 1; i <= contacts; i++) {
      po.seedContactPerson(customerIds[i % customerIds.length]!, {
        FirstName: `Kontakt${i}`,
        LastName: 'Bench',
        EmailAddress: i % 2 === 0 ? `ansatt${i}@bench.no` : `kontakt${i}@bench.no`,
      });
    }
  } else {
    const shared = Math.floor(N * 0.8);
    const ambiguous = Math.min(scenario.ambiguous ?? 0, N - shared);
    for (let i = 1; i <= N; i++) {
      tb.seedKunde({ Id: `K${i}`, Navn: `Kunde ${i}`, Epost: `kunde${i}@bench.no` });
    }
    // Customers 1..shared carry Kunde i's e-mail; the next `ambiguous` carry the e-mail of
    // Kunde 1..ambiguous again (two Customers match one Kunde); the rest match nothing.
    for (let i = 1; i <= N; i++) {
      const email =
        i <= shared
          ? `kunde${i}@bench.no`
          : i <= shared + ambiguous
            ? `kunde${i - shared}@bench.no`
            : `customer${i}@bench.no`;
      po.seedCustomer({ Name: `Customer ${i}`, EmailAddress: email });
    }
  }
  const env = fakesEnv(tb, po);
  process.stdout.write(`${JSON.stringify({ env })}\n`);
  const input = createInterface({ input: process.stdin });
  input.on('line', (line) => {
    if (line.trim() !== 'stats') return;
    const stats: FakesStats = {
      requests: { tidsbanken: tb.requests.length, poweroffice: po.requests.length },
      rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20),
    };
    process.stdout.write(`${JSON.stringify(stats)}\n`);
  });
  await new Promise<void>((resolve) => input.once('close', resolve));
  await Promise.all([tb.close(), po.close()]);
}

if (process.env.BENCH_ROLE === 'fakes') {
  runFakes(JSON.parse(process.env.BENCH_FAKES ?? '{}') as FakesScenario).then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`fakes failed: ${String(err)}\n`);
      process.exit(1);
    },
  );
}
