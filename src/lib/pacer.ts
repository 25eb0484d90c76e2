import PQueue from 'p-queue';

/** Writes go before reads, reads before polling (docs/ARCHITECTURE.md "Pacing"). */
export type Priority = 'write' | 'read' | 'poll';
const PRIORITY: Record<Priority, number> = { write: 2, read: 1, poll: 0 };
const HOLD_SLACK_MS = 15;

// The vendor counts requests when they arrive at its gateway, and a request arrives some
// time after it starts (a new connection is tens of ms slower than a kept-alive one; more
// under load — measured against the fakes). A window counted from the start therefore
// lets N+1 arrivals fall into one second. So each of the N slots is held until one window
// after its request *ended*: the next request in that slot starts after the previous one
// has arrived plus a full window, whatever the network did. At most N slots means at most N
// arrivals in any sliding window. The price is the round-trip time per cycle (5 ms on
// loopback ≈ 99.5% of the limit; 50 ms ≈ 95%).

/**
 * One pacer per target system: every request to that system (token, polling, reads, writes)
 * passes through it, and the limit holds in every rolling second, not only on average.
 * Higher priorities take the next free slot first. A 429 pauses the whole system, since
 * the vendor's limit is per subscription key, not per request type.
 */
export class Pacer {
  private readonly queue: PQueue;
  private readonly holdMs: number;
  private readonly slots: number;
  /** Requests of each priority queued or holding a slot. */
  private readonly active: Record<Priority, number> = { write: 0, read: 0, poll: 0 };
  /**
   * When each slot now holding after its request ended frees, by priority. One object per
   * slot: two holds can end at the same instant and must both count.
   */
  private readonly releases: Record<Priority, Set<{ at: number }>> = {
    write: new Set(),
    read: new Set(),
    poll: new Set(),
  };
  private pausedUntil = 0;
  private resumeTimer: NodeJS.Timeout | undefined;
  private refused: { since: Date; message: string } | undefined;
  /** How long refused credentials pause the system before they are tried again. */
  readonly credentialsRetryMs: number;

  constructor(
    readonly system: string,
    readonly perSecond: number,
    options: { credentialsRetryMs?: number | undefined } = {},
  ) {
    this.credentialsRetryMs = options.credentialsRetryMs ?? 30_000;
    // A fractional rate (0.5/s) becomes 1 request per 2 s.
    // Plus a little: timers run on the event loop's cached clock and can fire a millisecond
    // or so short of the full window (seen in CI: two arrivals exactly 1000 ms apart, a 429).
    this.holdMs = (perSecond >= 1 ? 1000 : Math.ceil(1000 / perSecond)) + HOLD_SLACK_MS;
    this.slots = perSecond >= 1 ? Math.floor(perSecond) : 1;
    this.queue = new PQueue({ concurrency: this.slots });
  }

  /**
   * Runs `fn` when a slot is free, ahead of any queued work of lower priority. The result
   * is returned as soon as `fn` settles; the slot stays taken for one window after that.
   */
  schedule<T>(fn: () => Promise<T>, priority: Priority): Promise<T> {
    this.active[priority]++;
    return new Promise<T>((resolve, reject) => {
      void this.queue
        .add(
          async () => {
            try {
              resolve(await fn());
            } catch (error) {
              reject(error instanceof Error ? error : new Error(String(error), { cause: error }));
            }
            const release = { at: performance.now() + this.holdMs };
            this.releases[priority].add(release);
            await hold(this.holdMs);
            this.releases[priority].delete(release);
          },
          { priority: PRIORITY[priority] },
        )
        .finally(() => {
          this.active[priority]--;
        });
    });
  }

  /** Holds every request to this system for `ms` (a 429's Retry-After). */
  pauseFor(ms: number): void {
    const until = Date.now() + ms;
    if (until <= this.pausedUntil) return;
    this.pausedUntil = until;
    this.queue.pause();
    clearTimeout(this.resumeTimer);
    this.resumeTimer = setTimeout(() => {
      this.pausedUntil = 0;
      this.queue.start();
    }, ms);
    this.resumeTimer.unref();
  }

  /**
   * The system refused our credentials: every request to it waits (writes, polls, reads) and
   * the credentials are tried again after `credentialsRetryMs` by whatever request comes first.
   */
  credentialsRefused(message: string): void {
    this.refused ??= { since: new Date(), message };
    this.pauseFor(this.credentialsRetryMs);
  }

  /** A request succeeded: the credentials work (again). */
  credentialsAccepted(): void {
    this.refused = undefined;
  }

  /** Since when and why the credentials are refused; undefined while they work. */
  get credentialsState(): { since: Date; message: string } | undefined {
    return this.refused;
  }

  /** Whether a 429 or refused credentials have paused this system right now. */
  get isPaused(): boolean {
    return this.pausedUntil > Date.now();
  }

  /**
   * Slots a new request of this priority would get without waiting behind its own kind or
   * higher (it overtakes queued lower priorities): the slots not taken by requests of this
   * priority or higher, queued or holding a slot. The
   * dispatcher takes a command off the outbox only when there is one (or one frees within
   * `withinMs`), so a command waits as pending (where newer edits still fold into it) rather
   * than inside the pacer.
   */
  freeSlotsFor(priority: Priority, withinMs = 0): number {
    if (this.isPaused) return 0;
    const levels = (Object.keys(PRIORITY) as Priority[]).filter(
      (p) => PRIORITY[p] >= PRIORITY[priority],
    );
    const ahead = levels.reduce((sum, p) => sum + this.active[p], 0);
    // Slots whose hold ends within `withinMs` count as free: a request given to the pacer now
    // waits that long inside it and leaves the moment its slot frees.
    const deadline = performance.now() + withinMs;
    let freeing = 0;
    if (withinMs > 0) {
      for (const p of levels) {
        for (const release of this.releases[p]) if (release.at <= deadline) freeing++;
      }
    }
    return Math.max(0, this.slots - ahead + freeing);
  }

  /** Requests waiting for their turn. */
  get size(): number {
    return this.queue.size;
  }

  /** Resolves when nothing is queued or running. */
  onIdle(): Promise<void> {
    return this.queue.onIdle();
  }

  clear(): void {
    this.queue.clear();
    clearTimeout(this.resumeTimer);
  }
}

function hold(ms: number): Promise<void> {
  return new Promise((resolve) => {
    // A held slot alone must not keep the process alive at shutdown.
    setTimeout(resolve, ms).unref();
  });
}
