import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

// The shared machinery of both fake APIs: a real HTTP server on 127.0.0.1:0, a request log,
// fault injection, a sliding-window rate limiter and a tiny router. What is specific to one
// API (auth, bodies, error formats) is passed in by tidsbanken.ts / poweroffice.ts.

export interface RecordedRequest {
  seq: number;
  /** The fake's clock (performance.now() unless given) in ms when the request arrived. */
  at: number;
  method: string;
  /** Without the query string, as sent (original casing). */
  path: string;
  query: Record<string, string>;
  /** Lower-case names, as node:http gives them. */
  headers: Record<string, string | undefined>;
  /** Parsed JSON when the body is JSON, the raw text otherwise, undefined when empty. */
  body: unknown;
  /** What the fake answered; 0 while pending and for dropped / timed-out requests. */
  status: number;
}

export type FaultKind = '429' | '500' | '503' | 'timeout' | 'drop' | 'slow';

export interface FaultOptions {
  /** Retry-After on a '429' fault (default 1) and on '503' when given. */
  retryAfterSeconds?: number;
  /** Delay of a 'slow' answer (default 2000 ms). */
  delayMs?: number;
  /** Only requests this returns true for get (and use up) the fault. */
  match?: (req: RecordedRequest) => boolean;
  /**
   * For 'timeout' and 'drop': handle the request (writes take effect) and lose only the
   * answer, the case that makes retried writes dangerous. Default false: nothing happens.
   */
  process?: boolean;
}

export interface RandomFaultOptions extends Omit<FaultOptions, 'match'> {
  probability: number;
  kinds: FaultKind[];
  seed?: number;
  match?: (req: RecordedRequest) => boolean;
}

export interface FakeResponse {
  status: number;
  headers?: Record<string, string>;
  /** Serialised as JSON (`application/json; charset=utf-8`). */
  json?: unknown;
  /** Sent as is (give a content-type in headers). */
  text?: string;
}

export interface FakeRequest {
  method: string;
  path: string;
  /** Query parameters; repeated names keep the last value. */
  query: Record<string, string>;
  headers: Record<string, string | undefined>;
  rawBody: string;
  /** Parsed JSON, or undefined when the body is empty or not JSON (see bodyError). */
  body: unknown;
  /** Set when the content type says JSON but the body does not parse. */
  bodyError?: string;
  /** Capture groups of the route pattern, URL-decoded. */
  params: string[];
  recorded: RecordedRequest;
}

export interface FakeRoute {
  method: string;
  /** Matched against the path without query; give it the `i` flag for case-insensitive paths. */
  pattern: RegExp;
  handle: (req: FakeRequest) => FakeResponse;
}

export interface FakeServerConfig {
  routes: FakeRoute[];
  /** Milliseconds for arrival times and the rate limit window (default performance.now). */
  clock?: () => number;
  rateLimitPerSecond?: number;
  /** The key a rate limit counts per (the subscription key for both APIs). */
  rateLimitKey: (req: FakeRequest) => string;
  /** Checks done by the gateway before the rate limiter (e.g. a missing subscription key). */
  gateway?: (req: FakeRequest) => FakeResponse | undefined;
  /** The answer of the rate limiter and of a '429' fault. */
  tooManyRequests: (retryAfterSeconds: number) => FakeResponse;
  serverError: (status: 500 | 503) => FakeResponse;
  notFound: (req: FakeRequest) => FakeResponse;
  methodNotAllowed: (req: FakeRequest) => FakeResponse;
}

interface PendingFault {
  remaining: number;
  kind: FaultKind;
  options: FaultOptions;
}

/** mulberry32: a small seeded PRNG, so a soak test's fault sequence is reproducible. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class FaultInjector {
  private readonly pending: PendingFault[] = [];
  private randomFaults: { options: RandomFaultOptions; next: () => number } | undefined;

  /** The next `count` requests (that `match`, if given) get `kind`. Queued injections apply in order. */
  inject(count: number, kind: FaultKind, options: FaultOptions = {}): void {
    if (!Number.isInteger(count) || count < 1) throw new Error('count must be a positive integer');
    this.pending.push({ remaining: count, kind, options });
  }

  /** A seeded random fault on each request (after any injected ones). */
  random(options: RandomFaultOptions): void {
    if (options.kinds.length === 0) throw new Error('kinds must not be empty');
    this.randomFaults = { options, next: seededRandom(options.seed ?? 1) };
  }

  clear(): void {
    this.pending.length = 0;
    this.randomFaults = undefined;
  }

  /** Faults still queued by inject() (for assertions). */
  get remaining(): number {
    return this.pending.reduce((sum, fault) => sum + fault.remaining, 0);
  }

  /** @internal Picks (and uses up) the fault for this request, if any. */
  take(req: RecordedRequest): { kind: FaultKind; options: FaultOptions } | undefined {
    const index = this.pending.findIndex(
      (fault) => !fault.options.match || fault.options.match(req),
    );
    if (index >= 0) {
      const fault = this.pending[index]!;
      fault.remaining -= 1;
      if (fault.remaining === 0) this.pending.splice(index, 1);
      return { kind: fault.kind, options: fault.options };
    }
    const random = this.randomFaults;
    if (!random || (random.options.match && !random.options.match(req))) return undefined;
    if (random.next() >= random.options.probability) return undefined;
    const kind = random.options.kinds[Math.floor(random.next() * random.options.kinds.length)]!;
    return { kind, options: random.options };
  }
}

/** A sliding 1000 ms window per key; only requests it lets through count. */
export class SlidingWindowLimiter {
  private readonly windows = new Map<string, number[]>();

  constructor(
    private readonly perSecond: number,
    private readonly windowMs = 1000,
  ) {}

  /** True when the request may pass (and counts it), false when it must get a 429. */
  tryAcquire(key: string, now = performance.now()): boolean {
    const window = this.windows.get(key) ?? [];
    while (window.length > 0 && window[0]! <= now - this.windowMs) window.shift();
    if (window.length >= this.perSecond) {
      this.windows.set(key, window);
      return false;
    }
    window.push(now);
    this.windows.set(key, window);
    return true;
  }

  reset(): void {
    this.windows.clear();
  }
}

function headerRecord(req: IncomingMessage): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    out[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

function isJsonContentType(contentType: string | undefined): boolean {
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  return type === 'application/json' || type === 'text/json' || type.endsWith('+json');
}

export function jsonResponse(status: number, json: unknown, headers?: Record<string, string>) {
  return { status, json, ...(headers ? { headers } : {}) } satisfies FakeResponse;
}

export class FakeHttpServer {
  readonly requests: RecordedRequest[] = [];
  readonly faults = new FaultInjector();
  /** The fake's clock: arrival times, the rate limit window, token expiry. */
  readonly clock: () => number;
  url = '';
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private limiter: SlidingWindowLimiter | undefined;
  private seq = 0;
  private closed: Promise<void> | undefined;

  constructor(private readonly config: FakeServerConfig) {
    this.clock = config.clock ?? (() => performance.now());
    this.setRateLimit(config.rateLimitPerSecond);
    this.server = createServer((req, res) => {
      this.onRequest(req, res);
    });
    // Clients keep connections alive; close() must not wait for them.
    this.server.keepAliveTimeout = 5_000;
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  /** Changes (or with undefined removes) the rate limit; resets the window. */
  setRateLimit(perSecond: number | undefined): void {
    this.limiter = perSecond === undefined ? undefined : new SlidingWindowLimiter(perSecond);
  }

  /** Client connections open now (a killed client's close once the kernel has ended them). */
  get openConnections(): number {
    return this.sockets.size;
  }

  clearRequests(): void {
    this.requests.length = 0;
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const { port } = this.server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${port}`;
  }

  /** Ends every socket at once, including ones held open by a 'timeout' fault. */
  close(): Promise<void> {
    this.closed ??= new Promise<void>((resolve) => {
      for (const timer of this.timers) clearTimeout(timer);
      this.timers.clear();
      this.server.close(() => resolve());
      for (const socket of this.sockets) socket.destroy();
      this.server.closeAllConnections();
    });
    return this.closed;
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://fake.invalid');
    const query: Record<string, string> = {};
    for (const [name, value] of url.searchParams) query[name] = value;
    const recorded: RecordedRequest = {
      seq: ++this.seq,
      at: this.clock(),
      method: req.method ?? 'GET',
      path: url.pathname,
      query,
      headers: headerRecord(req),
      body: undefined,
      status: 0,
    };
    this.requests.push(recorded);
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const rawBody = Buffer.concat(chunks).toString('utf8');
      const fakeReq: FakeRequest = {
        method: recorded.method,
        path: recorded.path,
        query,
        headers: recorded.headers,
        rawBody,
        body: undefined,
        params: [],
        recorded,
      };
      if (rawBody.length > 0) {
        if (isJsonContentType(recorded.headers['content-type'])) {
          try {
            fakeReq.body = JSON.parse(rawBody) as unknown;
          } catch (error) {
            fakeReq.bodyError = (error as Error).message;
          }
        }
        recorded.body = fakeReq.body ?? rawBody;
      }
      this.dispatch(fakeReq, res);
    });
  }

  private dispatch(req: FakeRequest, res: ServerResponse): void {
    const fault = this.faults.take(req.recorded);
    switch (fault?.kind) {
      case '429':
        return this.send(
          res,
          req,
          this.config.tooManyRequests(fault.options.retryAfterSeconds ?? 1),
        );
      case '500':
        return this.send(res, req, this.config.serverError(500));
      case '503': {
        const answer = this.config.serverError(503);
        const retryAfter = fault.options.retryAfterSeconds;
        if (retryAfter !== undefined) {
          answer.headers = { ...answer.headers, 'Retry-After': String(retryAfter) };
        }
        return this.send(res, req, answer);
      }
      case 'timeout':
        // Never answered: the socket stays open until the client gives up or close() runs.
        if (fault.options.process) this.handle(req);
        return;
      case 'drop':
        if (fault.options.process) this.handle(req);
        res.socket?.destroy();
        return;
      case 'slow': {
        // Handled now (writes take effect at arrival), answered after the delay.
        const answer = this.handle(req);
        const timer = setTimeout(() => {
          this.timers.delete(timer);
          this.send(res, req, answer);
        }, fault.options.delayMs ?? 2_000);
        this.timers.add(timer);
        return;
      }
      case undefined:
        return this.send(res, req, this.handle(req));
    }
  }

  private handle(req: FakeRequest): FakeResponse {
    const rejected = this.config.gateway?.(req);
    if (rejected) return rejected;
    if (this.limiter && !this.limiter.tryAcquire(this.config.rateLimitKey(req), req.recorded.at)) {
      return this.config.tooManyRequests(1);
    }
    let pathMatched = false;
    for (const route of this.config.routes) {
      const match = route.pattern.exec(req.path);
      if (!match) continue;
      pathMatched = true;
      if (route.method !== req.method) continue;
      req.params = match.slice(1).map((part) => decodeURIComponent(part ?? ''));
      try {
        return route.handle(req);
      } catch (error) {
        // A bug in the fake, not API behaviour: make it loud in the test output.
        console.error('fake API handler failed', error);
        return jsonResponse(500, { error: 'fake handler failed', message: String(error) });
      }
    }
    return pathMatched ? this.config.methodNotAllowed(req) : this.config.notFound(req);
  }

  private send(res: ServerResponse, req: FakeRequest, answer: FakeResponse): void {
    if (res.destroyed || res.writableEnded) return;
    req.recorded.status = answer.status;
    const headers: Record<string, string> = { ...answer.headers };
    let payload: string | undefined;
    if (answer.json !== undefined) {
      payload = JSON.stringify(answer.json);
      headers['Content-Type'] ??= 'application/json; charset=utf-8';
    } else if (answer.text !== undefined) {
      payload = answer.text;
    }
    if (payload !== undefined) headers['Content-Length'] = String(Buffer.byteLength(payload));
    res.writeHead(answer.status, headers);
    res.end(payload);
  }
}

/** Most requests that arrived in any sliding 1000 ms window. */
export function maxPerSlidingSecond(requests: readonly RecordedRequest[]): number {
  const times = requests.map((r) => r.at).sort((a, b) => a - b);
  let max = 0;
  let start = 0;
  for (let end = 0; end < times.length; end++) {
    while (times[end]! - times[start]! >= 1000) start++;
    max = Math.max(max, end - start + 1);
  }
  return max;
}
