import PQueue from 'p-queue';

/** Writes go before reads, reads before polling (DESIGN.md §3.6). */
export type Priority = 'write' | 'read' | 'poll';
const PRIORITY: Record<Priority, number> = { write: 2, read: 1, poll: 0 };

// The vendor measures at its gateway, after our request has crossed the network; a little
// slack on our window keeps a request that left late from landing in the previous second.
// The window starts when a request starts, and a request that must open a new connection
// arrives some 20 ms later than one on a kept-alive socket (measured against the fakes), so
// 25 ms proved too tight. 40 ms keeps 96% of the limit usable.
const WINDOW_SLACK_MS = 40;

/**
 * One pacer per target system: every request to that system (token, polling, reads, writes)
 * passes through it. p-queue's strict mode is a sliding window, so the limit holds in every
 * rolling second, not only on average. A 429 pauses the whole system, since the vendor's
 * limit is per subscription key, not per request type.
 */
export class Pacer {
  private readonly queue: PQueue;
  private pausedUntil = 0;
  private resumeTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly system: string,
    readonly perSecond: number,
  ) {
    // A fractional rate (0.5/s) becomes 1 request per 2 s.
    const interval = perSecond >= 1 ? 1000 : Math.ceil(1000 / perSecond);
    const intervalCap = perSecond >= 1 ? Math.floor(perSecond) : 1;
    this.queue = new PQueue({
      interval: interval + WINDOW_SLACK_MS,
      intervalCap,
      strict: true,
    });
  }

  /** Runs `fn` when the window allows, ahead of any queued work of lower priority. */
  schedule<T>(fn: () => Promise<T>, priority: Priority): Promise<T> {
    return this.queue.add(fn, { priority: PRIORITY[priority] });
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

  /** Whether a 429 has paused this system right now. */
  get isPaused(): boolean {
    return this.pausedUntil > Date.now();
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
