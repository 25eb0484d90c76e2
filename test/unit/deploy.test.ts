import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { loadConfig } from '../../src/config.js';

// The deploy/ files: valid YAML holding what deploy/README.md promises. (No container engine
// or cluster runs here; this is the syntax and the contract, not a deployment.)

const root = join(import.meta.dirname, '..', '..');

// Parsed YAML is walked by path below; a wrong path fails the assertion that reads it.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Yaml = Record<string, any>;

function documents(path: string): Yaml[] {
  const docs = parseAllDocuments(readFileSync(join(root, path), 'utf8'));
  for (const doc of docs) expect(doc.errors, path).toEqual([]);
  return docs.map((d) => d.toJS() as Yaml);
}

const manifests = readdirSync(join(root, 'deploy', 'kubernetes'))
  .filter((f) => f.endsWith('.yaml'))
  .flatMap((f) => documents(join('deploy', 'kubernetes', f)));
const byKind = (kind: string) => manifests.filter((m) => m.kind === kind);

describe('deploy/kubernetes', () => {
  it('every manifest has apiVersion, kind and a name', () => {
    expect(manifests.length).toBeGreaterThanOrEqual(4);
    for (const m of manifests) {
      expect(typeof m.apiVersion).toBe('string');
      expect(typeof m.kind).toBe('string');
      expect(m.metadata?.name).toMatch(/^[a-z0-9-]+$/);
    }
  });

  it('the Deployment runs 2 replicas with liveness /healthz, readiness /readyz, resources and secrets from a Secret', () => {
    const [deployment] = byKind('Deployment');
    expect(deployment?.spec.replicas).toBe(2);
    const labels = deployment?.spec.selector.matchLabels;
    expect(deployment?.spec.template.metadata.labels).toMatchObject(labels);
    const container = deployment?.spec.template.spec.containers[0];
    expect(container.livenessProbe.httpGet.path).toBe('/healthz');
    expect(container.readinessProbe.httpGet.path).toBe('/readyz');
    expect(container.resources.requests.memory).toBeDefined();
    expect(container.resources.limits.memory).toBeDefined();
    expect(container.envFrom[0].secretRef.name).toBe(byKind('Secret')[0]?.metadata.name);
    expect(deployment?.spec.template.spec.securityContext.runAsNonRoot).toBe(true);
    const ports = container.ports.map((p: { name: string }) => p.name);
    expect(ports).toEqual(['http', 'admin']);
    const env = Object.fromEntries(
      container.env.map((e: { name: string; value: string }) => [e.name, e.value]),
    );
    expect(env.ADMIN_PORT).toBe(String(container.ports[1].containerPort));
  });

  it('SIGTERM has time to drain: the grace period exceeds SHUTDOWN_TIMEOUT_MS, which exceeds SHUTDOWN_DELAY_MS', () => {
    const [deployment] = byKind('Deployment');
    const container = deployment?.spec.template.spec.containers[0];
    const env = Object.fromEntries(
      container.env.map((e: { name: string; value: string }) => [e.name, e.value]),
    );
    const graceMs = Number(deployment?.spec.template.spec.terminationGracePeriodSeconds) * 1000;
    expect(Number(env.SHUTDOWN_TIMEOUT_MS)).toBeLessThan(graceMs);
    expect(Number(env.SHUTDOWN_DELAY_MS)).toBeLessThan(Number(env.SHUTDOWN_TIMEOUT_MS));
    // The readiness probe notices within the delay: unready after failureThreshold periods.
    const probe = container.readinessProbe;
    expect(probe.periodSeconds * probe.failureThreshold * 1000).toBeLessThanOrEqual(
      Number(env.SHUTDOWN_DELAY_MS),
    );
  });

  it('caps the V8 heap well under the memory limit, with a young generation sized for page-sized batches', () => {
    const container = byKind('Deployment')[0]?.spec.template.spec.containers[0];
    const env = Object.fromEntries(
      (container.env as { name: string; value: string }[]).map((e) => [e.name, e.value]),
    );
    const flag = (name: string) =>
      Number(new RegExp(`--${name}=(\\d+)`).exec(env.NODE_OPTIONS ?? '')?.[1]);
    const heapMiB = flag('max-old-space-size');
    const semiMiB = flag('max-semi-space-size');
    const limit = Number(/^(\d+)Mi$/.exec(container.resources.limits.memory as string)?.[1]);
    expect(heapMiB).toBeGreaterThanOrEqual(160);
    // In a small container V8 shrinks the young generation with the heap limit, and the
    // service then spends two fifths of its CPU collecting garbage (bench/README.md).
    expect(semiMiB).toBeGreaterThanOrEqual(16);
    // Old generation plus the young one (three semi-spaces) stay within half the limit.
    expect(heapMiB + 3 * semiMiB).toBeLessThanOrEqual(limit / 2);
  });

  it('a PodDisruptionBudget keeps one replica through voluntary disruptions, selecting the pods', () => {
    const [pdb] = byKind('PodDisruptionBudget');
    expect(pdb?.spec.minAvailable).toBe(1);
    expect(pdb?.spec.selector.matchLabels).toEqual(
      byKind('Deployment')[0]?.spec.selector.matchLabels,
    );
  });
});

describe('deploy/Dockerfile and compose', () => {
  const dockerfile = readFileSync(join(root, 'deploy', 'Dockerfile'), 'utf8');

  it('builds in stages, installs production dependencies only, runs node as a non-root PID 1 with a health check', () => {
    expect(dockerfile.match(/^FROM /gm)?.length).toBeGreaterThanOrEqual(2);
    expect(dockerfile).toMatch(/npm ci --omit=dev/);
    expect(dockerfile).toMatch(/^USER node$/m);
    expect(dockerfile).toMatch(/^HEALTHCHECK .*\n?.*\/healthz/m);
    const cmd = /^CMD \["node", "([^"]+)"\]$/m.exec(dockerfile)?.[1];
    expect(cmd).toBe('dist/src/main.js');
    // The compiled entry comes from src/main.ts (tsconfig.build.json: rootDir ".").
    expect(existsSync(join(root, cmd!.replace(/^dist\//, '').replace(/\.js$/, '.ts')))).toBe(true);
  });

  it('the embedded database folder is writable by the service, also with the .env.example value', () => {
    // DATA_DIR unset or from .env.example (./data): relative to WORKDIR, owned by the user.
    expect(dockerfile).not.toMatch(/DATA_DIR=/);
    const workdir = [...dockerfile.matchAll(/^WORKDIR (\S+)$/gm)].at(-1)?.[1];
    const example = readFileSync(join(root, '.env.example'), 'utf8');
    const dataDir = /^DATA_DIR=(.*)$/m.exec(example)?.[1] || './data';
    const path = join(workdir!, dataDir);
    expect(dockerfile).toMatch(
      new RegExp(`^RUN mkdir -p ${path} && chown node:node ${path}$`, 'm'),
    );
  });

  it('compose runs the service against PostgreSQL', () => {
    const [compose] = documents(join('deploy', 'compose.yaml'));
    expect(compose?.services.postgres.image).toMatch(/^postgres:/);
    expect(compose?.services.sync.environment.DATABASE_URL).toMatch(/@postgres:5432\//);
    expect(compose?.services.sync.depends_on.postgres.condition).toBe('service_healthy');
    const graceSeconds = Number(/^(\d+)s$/.exec(compose?.services.sync.stop_grace_period)?.[1]);
    expect(Number(compose?.services.sync.environment.SHUTDOWN_TIMEOUT_MS)).toBeLessThan(
      graceSeconds * 1000,
    );
  });

  it('compose runs node with the same heap settings as the Deployment', () => {
    const [compose] = documents(join('deploy', 'compose.yaml'));
    const deployment = documents(join('deploy', 'kubernetes', 'deployment.yaml')).find(
      (d) => d?.kind === 'Deployment',
    );
    const env = deployment?.spec.template.spec.containers[0].env as {
      name: string;
      value: string;
    }[];
    expect(compose?.services.sync.environment.NODE_OPTIONS).toBe(
      env.find((e) => e.name === 'NODE_OPTIONS')?.value,
    );
  });
});

describe('.env.example', () => {
  it('lists every variable the configuration reads', () => {
    const example = readFileSync(join(root, '.env.example'), 'utf8');
    const listed = new Set([...example.matchAll(/^([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]));
    const config = readFileSync(join(root, 'src', 'config.ts'), 'utf8');
    const read = [...config.matchAll(/^\s+([A-Z][A-Z0-9_]+[A-Z0-9]):/gm)].map((m) => m[1]!);
    expect(read.length).toBeGreaterThan(20);
    expect(read.filter((name) => !listed.has(name))).toEqual([]);
  });

  it('the README Configuration table documents every one of them too', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const table = /^## Configuration\n([\s\S]*?)^## /m.exec(readme)?.[1] ?? '';
    const documented = new Set(
      table
        .split('\n')
        .filter((l) => l.startsWith('| `'))
        .flatMap((l) => [...l.split('|')[1]!.matchAll(/`([A-Z][A-Z0-9_]+)`/g)].map((m) => m[1])),
    );
    const config = readFileSync(join(root, 'src', 'config.ts'), 'utf8');
    const read = [...config.matchAll(/^\s+([A-Z][A-Z0-9_]+[A-Z0-9]):/gm)].map((m) => m[1]!);
    expect(read.filter((name) => !documented.has(name))).toEqual([]);
  });

  it('holds the defaults: loaded as the environment, it configures what an empty one does', () => {
    const example = readFileSync(join(root, '.env.example'), 'utf8');
    const env = Object.fromEntries(
      [...example.matchAll(/^([A-Z][A-Z0-9_]+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]),
    );
    expect(loadConfig(env)).toEqual(loadConfig({}));
  });
});
