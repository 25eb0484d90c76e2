import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

// One registry per app instance (not the global one), so tests can build several apps in
// one process without "metric already registered" errors. Every metric of the service is
// declared here so an operator finds them in one place (README: "Metrics").
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  return {
    registry,
    ...httpMetrics(registers),
    ...webhookMetrics(registers),
    ...upstreamMetrics(registers),
    ...syncMetrics(registers),
    ...leaderMetrics(registers),
    ...credentialsMetrics(registers),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

/** HTTP requests answered. */
function httpMetrics(registers: Registry[]) {
  const httpRequests = new Counter({
    name: 'tbpo_http_requests_total',
    help: 'HTTP requests answered, by method, route and status code.',
    labelNames: ['method', 'route', 'code'] as const,
    registers,
  });
  const httpDuration = new Histogram({
    name: 'tbpo_http_request_duration_seconds',
    help: 'Time to answer an HTTP request, by method, route and status code.',
    labelNames: ['method', 'route', 'code'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers,
  });
  return { httpRequests, httpDuration };
}

/** Webhooks accepted, duplicated or refused, and how long accepting took. */
function webhookMetrics(registers: Registry[]) {
  const webhooksAccepted = new Counter({
    name: 'tbpo_webhooks_accepted_total',
    help: 'Webhooks stored in the inbox, by system.',
    labelNames: ['system'] as const,
    registers,
  });
  const webhooksDuplicate = new Counter({
    name: 'tbpo_webhooks_duplicate_total',
    help: 'Webhooks answered 202 without a new row (webhook-id or content seen before), by system.',
    labelNames: ['system'] as const,
    registers,
  });
  const webhooksRejected = new Counter({
    name: 'tbpo_webhooks_rejected_total',
    help: 'Webhooks refused, by system and reason (signature, schema, json, size, media_type, not_configured).',
    labelNames: ['system', 'reason'] as const,
    registers,
  });
  const webhookAcceptDuration = new Histogram({
    name: 'tbpo_webhook_accept_duration_seconds',
    help: 'Time from receiving a webhook to answering 202 (verification and durable insert), by system.',
    labelNames: ['system'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1],
    registers,
  });
  return { webhooksAccepted, webhooksDuplicate, webhooksRejected, webhookAcceptDuration };
}

/** Requests to the vendors' APIs: outcomes, retries, round trips, page and pacer waits. */
function upstreamMetrics(registers: Registry[]) {
  const upstreamRequests = new Counter({
    name: 'tbpo_upstream_requests_total',
    help: 'Requests sent to Tidsbanken/PowerOffice, by system, operation kind and code (HTTP status, "timeout", "network" or "aborted").',
    labelNames: ['system', 'kind', 'code'] as const,
    registers,
  });
  const upstreamRetries = new Counter({
    name: 'tbpo_upstream_retries_total',
    help: 'Requests retried, by system and reason (429, 5xx, timeout, network, token).',
    labelNames: ['system', 'reason'] as const,
    registers,
  });
  const upstreamDuration = new Histogram({
    name: 'tbpo_upstream_request_duration_seconds',
    help: 'Round-trip time of one upstream request (excluding time waiting in the pacer), by system.',
    labelNames: ['system'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers,
  });

  const pollPageWait = new Histogram({
    name: 'tbpo_poll_page_wait_seconds',
    help: 'Time a poll or full read waited for its next page after storing the previous one (the read ahead had not arrived yet), by system.',
    labelNames: ['system'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers,
  });

  const pacerWait = new Histogram({
    name: 'tbpo_pacer_wait_seconds',
    help: "Time a request waited in its system's pacer for a slot under the rate limit, by system and priority (write, read, poll).",
    labelNames: ['system', 'priority'] as const,
    buckets: [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers,
  });
  return { upstreamRequests, upstreamRetries, upstreamDuration, pollPageWait, pacerWait };
}

/** What the worker, the dispatcher and retention did. */
function syncMetrics(registers: Registry[]) {
  const eventsProcessed = new Counter({
    name: 'tbpo_events_processed_total',
    help: 'Inbox events the sync worker finished or set back, by source system and result (done, retry, dead).',
    labelNames: ['system', 'result'] as const,
    registers,
  });
  const commandsSent = new Counter({
    name: 'tbpo_commands_sent_total',
    help: 'Outbound commands the dispatcher took, by target system, operation and result (sent, retry, dead; dry_run and superseded were not sent).',
    labelNames: ['system', 'operation', 'result'] as const,
    registers,
  });
  const retentionPruned = new Counter({
    name: 'tbpo_retention_pruned_rows_total',
    help: 'Rows deleted by retention (RETENTION_DAYS), by table: inbound_events, outbound_commands, audit_entries.',
    labelNames: ['table'] as const,
    registers,
  });
  return { eventsProcessed, commandsSent, retentionPruned };
}

/** Each system's leadership on this replica (gauges read from the lease at scrape time). */
function leaderMetrics(registers: Registry[]) {
  // Read at scrape time from each system's leadership (registered by the service for each
  // system that is on), so the gauges cannot drift from the lease.
  const leaderChecks = new Map<
    string,
    { readonly isLeader: boolean; readonly isStarting: boolean }
  >();
  new Gauge({
    name: 'tbpo_leader',
    help: "1 when this replica holds the system's lease within its safe window (runs its dispatcher and pollers), 0 when not; absent for a system that is off. max by (system) across replicas should be 1.",
    labelNames: ['system'] as const,
    registers,
    collect() {
      this.reset();
      for (const [system, lease] of leaderChecks) this.set({ system }, lease.isLeader ? 1 : 0);
    },
  });
  new Gauge({
    name: 'tbpo_leader_starting',
    help: "1 while this replica holds the system's lease but its start-up steps have not succeeded yet (they are retried with backoff); 0 otherwise.",
    labelNames: ['system'] as const,
    registers,
    collect() {
      this.reset();
      for (const [system, lease] of leaderChecks) this.set({ system }, lease.isStarting ? 1 : 0);
    },
  });
  const leaderStartFailures = new Counter({
    name: 'tbpo_leader_start_failures_total',
    help: 'Failed start-up attempts of a new lease holder (each is retried), by system.',
    labelNames: ['system'] as const,
    registers,
  });
  /** Makes `tbpo_leader{system}` and `tbpo_leader_starting{system}` report `lease`. */
  const watchLeader = (
    system: string,
    lease: { readonly isLeader: boolean; readonly isStarting: boolean },
  ): void => {
    leaderChecks.set(system, lease);
  };
  return { leaderStartFailures, watchLeader };
}

/** Whether each system refuses our credentials on this replica. */
function credentialsMetrics(registers: Registry[]) {
  const credentialChecks = new Map<string, () => boolean>();
  new Gauge({
    name: 'tbpo_credentials_refused',
    help: '1 while the system refuses our credentials on this replica (its writes and polls are paused and the credentials are retried every 30 s), 0 when they work.',
    labelNames: ['system'] as const,
    registers,
    collect() {
      this.reset();
      for (const [system, check] of credentialChecks) this.set({ system }, check() ? 1 : 0);
    },
  });
  /** Makes `tbpo_credentials_refused{system}` report `check()` from now on. */
  const watchCredentials = (system: string, check: () => boolean): void => {
    credentialChecks.set(system, check);
  };
  return { watchCredentials };
}
