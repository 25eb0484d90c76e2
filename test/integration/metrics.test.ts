import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { createTestApp } from '../helpers/app.js';
import { startSyncHarness, type SyncHarness } from '../helpers/sync-harness.js';

let h: SyncHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** The value of one sample of the Prometheus text, or undefined when there is none. */
function sample(text: string, name: string, labels: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('service metrics', () => {
  it('after a first sync: each system led here, events processed, the fill sent and its pacer wait observed', async () => {
    h = await startSyncHarness({
      seed: (tb, po) => {
        tb.seedAnsatt({ Id: 7, Fornavn: 'Kari', Etternavn: 'Nordmann', Mobil: '+4791234567' });
        po.seedEmployee({ Number: 7, FirstName: 'Kari', LastName: 'Nordmann' });
      },
    });
    await h.settle();
    expect(h.writes(h.po).map((w) => `${w.method} ${w.path}`)).toEqual([
      expect.stringMatching(/^PATCH \/v2\/Employees\/\d+$/),
    ]);

    const text = (await request(h.app).get('/metrics')).text;
    expect(sample(text, 'tbpo_leader', 'system="tidsbanken"')).toBe(1);
    expect(sample(text, 'tbpo_leader', 'system="poweroffice"')).toBe(1);
    expect(
      sample(text, 'tbpo_events_processed_total', 'system="tidsbanken",result="done"'),
    ).toBeGreaterThanOrEqual(1);
    expect(
      sample(text, 'tbpo_events_processed_total', 'system="poweroffice",result="done"'),
    ).toBeGreaterThanOrEqual(1);
    expect(
      sample(
        text,
        'tbpo_commands_sent_total',
        'system="poweroffice",operation="update",result="sent"',
      ),
    ).toBe(1);
    expect(
      sample(text, 'tbpo_pacer_wait_seconds_count', 'system="poweroffice",priority="write"'),
    ).toBeGreaterThanOrEqual(1);
    expect(
      sample(text, 'tbpo_pacer_wait_seconds_count', 'system="tidsbanken",priority="poll"'),
    ).toBeGreaterThanOrEqual(1);
  });

  it('with DRY_RUN the command counts as dry_run, never as sent', async () => {
    h = await startSyncHarness({
      seed: (tb, po) => {
        tb.seedAnsatt({ Id: 7, Fornavn: 'Kari', Etternavn: 'Nordmann', Mobil: '+4791234567' });
        po.seedEmployee({ Number: 7, FirstName: 'Kari', LastName: 'Nordmann' });
      },
      env: { DRY_RUN: 'true' },
    });
    await h.settle();
    expect(h.writes(h.po)).toEqual([]);
    const text = (await request(h.app).get('/metrics')).text;
    const commands = (result: string) =>
      sample(
        text,
        'tbpo_commands_sent_total',
        `system="poweroffice",operation="update",result="${result}"`,
      );
    expect(commands('dry_run')).toBe(1);
    expect(commands('sent')).toBeUndefined();
  });
});

describe('the README Metrics section', () => {
  const readme = readFileSync(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');
  const section = /^### Metrics\n([\s\S]*?)^### /m.exec(readme)?.[1] ?? '';
  const cells = (line: string) => line.split(/(?<!\\)\|/).map((c) => c.trim());

  it('lists exactly the service metrics /metrics exposes, with their type and labels', async () => {
    const t = await createTestApp();
    try {
      await request(t.app).get('/metrics'); // the database-derived gauges are registered
      const exposed = (await t.metrics.registry.getMetricsAsJSON())
        .filter((m) => m.name.startsWith('tbpo_'))
        .map((m) => {
          const labels = (t.metrics.registry.getSingleMetric(m.name) as { labelNames?: string[] })
            .labelNames;
          return `${m.name} ${m.type} ${(labels ?? []).join(', ')}`.trim();
        })
        .sort();
      const documented = section
        .split('\n')
        .filter((l) => /^\| `tbpo_/.test(l))
        .map((l) => {
          const [, name, type, labels] = cells(l);
          return `${name!.replaceAll('`', '')} ${type} ${labels}`.trim();
        })
        .sort();
      expect(documented).toEqual(exposed);
    } finally {
      await t.close();
    }
  });

  it('alerts only on metrics that exist', () => {
    const documented = new Set([...section.matchAll(/^\| `(tbpo_[a-z_]+)`/gm)].map((m) => m[1]!));
    const alerts = section
      .split('\n')
      .filter((l) => l.startsWith('| ') && l.includes('tbpo_') && !/^\| `tbpo_/.test(l));
    expect(alerts.length).toBeGreaterThan(5);
    for (const alert of alerts) {
      for (const [name] of cells(alert)[2]!.matchAll(/tbpo_[a-z_]+/g)) {
        expect(documented, alert).toContain(name.replace(/_(bucket|sum|count)$/, ''));
      }
    }
  });
});
