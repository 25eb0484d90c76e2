import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Db } from '../db/database.js';
import { acquireLease, releaseLease, renewLease, type LeaseTerm } from '../db/leases.js';
import type { SystemName } from '../db/schema.js';
import type { Logger } from './logger.js';

// One holder per system across replicas: a lease row in the database (src/db/leases.ts),
// renewed by heartbeat every third of its TTL. No session state and no connection of its
// own, so it works through any pooler and a frozen or cut-off holder is replaced once its
// lease expires.
//
// Safety: this process counts its term as valid only until two thirds of the TTL after the
// start of its last successful renewal (a monotonic clock; the database's expiry is at
// least a full TTL after that moment). Past that it stops sending — every request of the
// holder's work asks `term.valid()` right before it leaves — before its lease can expire
// and another replica take over. What it still writes to the database is fenced by epoch.

/** This process, as it appears in lease rows and reconcile runs (pod name, pid, random). */
export const replicaId = `${hostname()}/${process.pid}/${randomUUID().slice(0, 8)}`;

/** A term held by this process: the database's term plus the local "still safe" check. */
export interface HeldTerm extends LeaseTerm {
  /** False once this process can no longer be sure it holds the lease: send nothing then. */
  readonly valid: () => boolean;
}

export interface LeadershipOptions {
  system: SystemName;
  db: Db;
  logger: Logger;
  /** Lease length; a frozen holder is replaced at most this long (plus one retry) later. */
  ttlMs: number;
  /**
   * Embedded database: one process per data directory, so a lease found held belongs to a
   * dead predecessor and is taken at once.
   */
  exclusive: boolean;
  /** Start-up steps of a new holder; retried with backoff until they succeed. */
  onAcquire: (term: HeldTerm) => Promise<void> | void;
  onLose: () => Promise<void> | void;
  /** Counts failed start-up attempts (a metric). */
  onStartFailure?: () => void;
  /** How often a replica without the lease tries to take it; default ttl / 5 (≤ 2 s). */
  retryMs?: number;
}

export class Leadership {
  private term: HeldTerm | undefined;
  private validUntil = 0;
  private started = false;
  private stopped = false;
  private ready = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private lapseTimer: NodeJS.Timeout | undefined;
  private transition: Promise<void> = Promise.resolve();

  /**
   * This holder in lease rows: the replica plus the instance, so that two services in one
   * process (as the tests run replicas) are two holders, never one that both think it is.
   */
  readonly holder = `${replicaId}/${randomUUID().slice(0, 4)}`;

  constructor(private readonly options: LeadershipOptions) {}

  /** Whether this process holds the lease and is within its safe window. */
  get isLeader(): boolean {
    return this.term !== undefined && performance.now() < this.validUntil;
  }

  /** Holds the lease but its start-up steps have not succeeded yet. */
  get isStarting(): boolean {
    return this.isLeader && !this.ready;
  }

  get lockName(): string {
    return `tbpo-dispatcher-${this.options.system}`;
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.loop = this.run();
  }

  private get renewEveryMs(): number {
    return this.options.ttlMs / 3;
  }

  private async run(): Promise<void> {
    const { db, system, ttlMs, logger } = this.options;
    const retryMs = this.options.retryMs ?? Math.min(2000, ttlMs / 5);
    let lastRenewAt = 0;
    while (!this.stopped) {
      const held = this.term;
      if (held === undefined) {
        const askedAt = performance.now();
        try {
          const term = await acquireLease(db, {
            system,
            holder: this.holder,
            ttlMs,
            force: this.options.exclusive,
          });
          if (term !== undefined && !this.stopped) {
            lastRenewAt = askedAt;
            this.take(term, askedAt);
          }
        } catch (err) {
          logger.warn({ err, lock: this.lockName }, 'could not try the leadership lease');
        }
        if (this.term === undefined) await this.sleep(retryMs);
        continue;
      }
      await this.sleep(lastRenewAt + this.renewEveryMs - performance.now());
      if (this.stopped || this.term !== held) continue;
      const askedAt = performance.now();
      try {
        const renewed = await renewLease(db, held, ttlMs);
        if (this.term !== held) continue;
        if (renewed) {
          lastRenewAt = askedAt;
          this.extend(askedAt);
        } else {
          this.lose('the lease was taken over or expired');
        }
      } catch (err) {
        logger.warn({ err, lock: this.lockName }, 'could not renew the leadership lease');
        if (this.term === held && performance.now() >= this.validUntil) {
          this.lose('the lease could not be renewed in time');
        } else {
          // Try again soon, still within the safe window.
          lastRenewAt = Math.max(lastRenewAt, performance.now() - this.renewEveryMs + 250);
        }
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      if (ms <= 0 || this.stopped) return resolve();
      const timer = setTimeout(resolve, ms);
      timer.unref();
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private extend(askedAt: number): void {
    this.validUntil = askedAt + (this.options.ttlMs * 2) / 3;
    clearTimeout(this.lapseTimer);
    // A renewal hanging on a stalled database must not keep this holder sending: step down
    // when the safe window ends without one.
    const term = this.term;
    this.lapseTimer = setTimeout(
      () => {
        if (this.term === term && performance.now() >= this.validUntil) {
          this.lose('the lease could not be renewed in time');
        }
      },
      this.validUntil - performance.now() + 1,
    );
    this.lapseTimer.unref();
  }

  private take(term: LeaseTerm, askedAt: number): void {
    const held: HeldTerm = {
      ...term,
      valid: () => this.term === held && performance.now() < this.validUntil,
    };
    this.term = held;
    this.ready = false;
    this.extend(askedAt);
    this.options.logger.info(
      { lock: this.lockName, leader: true, epoch: term.epoch, holder: this.holder },
      'leadership taken',
    );
    this.transition = this.transition.then(() => this.startUp(held));
  }

  /** The start-up steps, retried with capped exponential backoff while the term lasts. */
  private async startUp(term: HeldTerm): Promise<void> {
    for (let attempt = 1; term.valid() && !this.stopped; attempt++) {
      try {
        await this.options.onAcquire(term);
        if (this.term === term) this.ready = true;
        return;
      } catch (err) {
        this.options.onStartFailure?.();
        const waitMs = Math.min(30_000, 500 * 2 ** (attempt - 1));
        this.options.logger.error(
          { err, lock: this.lockName, attempt, retryInMs: waitMs },
          'leadership start-up failed; retrying',
        );
        const until = performance.now() + waitMs;
        while (performance.now() < until && term.valid() && !this.stopped) {
          await new Promise((r) => setTimeout(r, Math.min(200, waitMs)).unref());
        }
      }
    }
  }

  private lose(reason: string): void {
    if (this.term === undefined) return;
    const epoch = this.term.epoch;
    this.term = undefined;
    this.ready = false;
    this.validUntil = 0;
    clearTimeout(this.lapseTimer);
    this.options.logger[reason === 'stopping' ? 'info' : 'warn'](
      { lock: this.lockName, leader: false, epoch, reason },
      'leadership lost',
    );
    this.transition = this.transition
      .then(() => this.options.onLose())
      .catch((err: unknown) =>
        this.options.logger.error({ err, lock: this.lockName }, 'leadership hand-over failed'),
      );
    this.wake?.();
  }

  /** Stops this holder's work, then gives the lease up so another replica takes over now. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    const term = this.term;
    if (term !== undefined) this.lose('stopping');
    await this.transition;
    await this.loop;
    if (term !== undefined) {
      await releaseLease(this.options.db, term).catch((err: unknown) =>
        this.options.logger.warn({ err, lock: this.lockName }, 'could not release the lease'),
      );
    }
  }
}
