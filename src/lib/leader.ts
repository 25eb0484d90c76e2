import pg from 'pg';
import type { Logger } from './logger.js';

// One holder per name across replicas: a PostgreSQL session-level advisory lock on a
// connection of its own. When the holder dies its connection closes and the server releases
// the lock; another replica's next try takes it over. PGlite is one process: always the holder.

export interface LeadershipOptions {
  name: string;
  /** undefined → embedded database, single process: leadership is immediate. */
  databaseUrl: string | undefined;
  logger: Logger;
  onAcquire: () => Promise<void> | void;
  onLose: () => Promise<void> | void;
  retryMs?: number;
}

export class Leadership {
  private client: pg.Client | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private leader = false;
  private transition: Promise<void> = Promise.resolve();

  constructor(private readonly options: LeadershipOptions) {}

  get isLeader(): boolean {
    return this.leader;
  }

  start(): void {
    if (this.options.databaseUrl === undefined) {
      this.become(true);
      return;
    }
    void this.tryAcquire();
  }

  private become(leader: boolean): void {
    if (this.leader === leader) return;
    this.leader = leader;
    this.options.logger.info(
      { lock: this.options.name, leader },
      leader ? 'leadership taken' : 'leadership lost',
    );
    this.transition = this.transition
      .then(() => (leader ? this.options.onAcquire() : this.options.onLose()))
      .catch((err: unknown) =>
        this.options.logger.error({ err, lock: this.options.name }, 'leadership transition failed'),
      );
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tryAcquire(), this.options.retryMs ?? 2000);
    this.timer.unref();
  }

  private async tryAcquire(): Promise<void> {
    if (this.stopped || this.leader) return;
    try {
      if (this.client === undefined) {
        const client = new pg.Client({ connectionString: this.options.databaseUrl });
        client.on('error', () => this.dropClient());
        client.on('end', () => this.dropClient());
        await client.connect();
        this.client = client;
      }
      const { rows } = await this.client.query<{ ok: boolean }>(
        'select pg_try_advisory_lock(hashtext($1)) as ok',
        [this.options.name],
      );
      if (rows[0]?.ok === true) this.become(true);
    } catch (err) {
      this.options.logger.warn(
        { err, lock: this.options.name },
        'could not try the leadership lock',
      );
      this.dropClient();
    }
    if (!this.leader) this.schedule();
  }

  private dropClient(): void {
    const client = this.client;
    this.client = undefined;
    client?.end().catch(() => undefined);
    if (this.leader && this.options.databaseUrl !== undefined) {
      this.become(false);
      this.schedule();
    }
  }

  /** Gives the lock up (its holder's work is stopped first). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.leader) this.become(false);
    await this.transition;
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }
}
