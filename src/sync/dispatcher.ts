import { randomUUID } from 'node:crypto';
import type { Config } from '../config.js';
import { insertAuditEntries } from '../db/audit.js';
import {
  claimCommands,
  markCommandDead,
  markCommandDone,
  markCommandRetry,
  pruneSupersededFields,
  requeueCommand,
  requeueSendingCommands,
  type RetryWait,
} from '../db/commands.js';
import type { Db, DbOrTrx } from '../db/database.js';
import { insertInboundEvent, writeFeedbackEventId } from '../db/inbound-events.js';
import { insertLink, lockLink, setLinkInflight } from '../db/links.js';
import { getMirrorRecord } from '../db/records.js';
import type { OutboundCommandRow, SystemName } from '../db/schema.js';
import { CredentialsError, FencedError, UpstreamError } from '../errors.js';
import type { HeldTerm } from '../lib/leader.js';
import type { Logger } from '../lib/logger.js';
import type { Metrics } from '../lib/metrics.js';
import type { Pacer } from '../lib/pacer.js';
import type { Poller } from '../lib/pollers.js';
import {
  parentIdOf,
  recordIdOf,
  UnseenChangeError,
  type Clients,
  type UpdateResult,
} from '../record-adapter.js';
import { adapterOf } from '../record-types.js';
import type { Inflight } from './diff.js';
import { flowById } from './flows.js';
import { fieldsAlreadyInPlace } from './landed.js';

// The dispatcher of one target system (docs/ARCHITECTURE.md "Outbox and dispatcher"): claims due commands and sends them
// through that system's client (and so its pacer). Only the replica holding the system's
// lease runs it, so the vendor's shared limit holds across replicas. Every claim, completion
// and requeue is fenced by the lease epoch the claim was made under (src/db/commands.ts), and
// no request leaves once the term is no longer valid here (src/lib/leader.ts).

export interface DispatcherDeps {
  system: SystemName;
  db: Db;
  config: Readonly<Config>;
  logger: Logger;
  clients: Clients;
  metrics: Metrics;
  /** The target system's pacer: commands are claimed only as it has room for them. */
  pacer?: Pacer | undefined;
  /**
   * Base of the capped exponential backoff (×2 per attempt, ≤ 5 min, ±25 %) a command waits in
   * the outbox after a 5xx, timeout or network error. Default 2 s; tests shorten it.
   */
  backoffBaseMs?: number | undefined;
  /**
   * The target system's running change pollers: updates of a record type wait until its
   * poller has read the system once since this dispatcher's lease term began (edits made
   * there while no replica was leading are in the inbox before anything is written over them).
   */
  pollers?: readonly Poller[] | undefined;
  /** Most commands claimed per round. */
  batchSize?: number;
  idleMs?: number;
}

type Fields = Record<string, unknown>;

function fieldsOf(command: OutboundCommandRow): Fields {
  const fields = command.payload.fields;
  return fields !== null && typeof fields === 'object' ? (fields as Fields) : {};
}

interface SendResult extends UpdateResult {
  /** The new record's id (creates). */
  recordId?: string | undefined;
}

/** How long an update that met an unseen change waits for the worker to sync it. */
const UNSEEN_CHANGE_WAIT_MS = 500;

function describeError(err: unknown): { message: string; retryable: boolean } & Fields {
  const retryable = !(err instanceof UpstreamError) || err.retryable;
  return err instanceof UpstreamError
    ? {
        message: err.message,
        status: err.upstreamStatus ?? null,
        retryable,
        body: err.body ?? null,
      }
    : { message: (err as Error).message, retryable };
}

const MAX_BACKOFF_MS = 5 * 60_000;

/**
 * How a failed command waits in the outbox: refused credentials until they are tried again,
 * a 429 for the Retry-After the system asked (it
 * refused the request, nothing was applied, so the attempt is not counted); anything else
 * retryable by capped exponential backoff.
 */
function waitAfter(err: unknown, attempts: number, baseMs: number): RetryWait {
  if (err instanceof CredentialsError) {
    return { afterMs: err.retryAfterMs, uncounted: true };
  }
  if (err instanceof UpstreamError && err.upstreamStatus === 429) {
    return { afterMs: err.retryAfterMs ?? 1000, uncounted: true };
  }
  const exp = Math.min(MAX_BACKOFF_MS, baseMs * 2 ** Math.min(Math.max(attempts - 1, 0), 20));
  return { afterMs: exp * (0.75 + Math.random() / 2) };
}

function logFields(command: OutboundCommandRow) {
  return {
    command: command.id,
    system: command.system,
    operation: command.operation,
    recordType: command.record_type,
    recordId: command.record_id,
    flow: command.flow,
  };
}

const SYSTEM_LABEL: Record<SystemName, string> = {
  tidsbanken: 'Tidsbanken',
  poweroffice: 'PowerOffice',
};

/**
 * How far ahead of a pacer slot freeing a command is claimed. Long enough to cover the claim
 * and the reads before the request (bench/README.md, "Paired check": at 25 ms the paced rate
 * was 0.92–0.97 of the limit, at 150 ms 0.93–1.0); short against the hold that lets edits
 * fold into a pending command.
 */
const CLAIM_AHEAD_MS = 150;

export class Dispatcher {
  private running = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private readonly worker = `dispatcher-${randomUUID().slice(0, 8)}`;
  private term: HeldTerm | undefined;
  /** Per poller, how many reads it had started when this term began. */
  private pollMarks = new Map<Poller, number>();

  constructor(private readonly deps: DispatcherDeps) {}

  get system(): SystemName {
    return this.deps.system;
  }

  /**
   * Takes over from a predecessor under lease `term` (its in-flight commands go back to
   * pending), then loops until stopped. Claims carry the term's epoch; requests leave only
   * while `term.valid()`.
   */
  async start(term: HeldTerm): Promise<void> {
    if (this.running && this.term === term) return;
    if (this.running) await this.stop();
    this.term = term;
    this.pollMarks = new Map((this.deps.pollers ?? []).map((p) => [p, p.readsStarted]));
    const requeued = await requeueSendingCommands(this.deps.db, term);
    if (requeued > 0)
      this.deps.logger.warn(
        { system: this.deps.system, requeued },
        'requeued commands left in flight',
      );
    this.running = true;
    this.loop = (async () => {
      while (this.running) {
        let sent = 0;
        try {
          sent = await this.runOnce();
        } catch (err) {
          this.deps.logger.error({ err, system: this.deps.system }, 'dispatcher round failed');
        }
        if (sent === 0 && this.running) {
          // Idle, or every slot is busy: look again soon (a slot frees within a window).
          const busy = this.inFlight.size > 0;
          await new Promise<void>((resolve) => {
            this.wake = resolve;
            setTimeout(resolve, busy ? 20 : (this.deps.idleMs ?? 200)).unref();
          });
        }
      }
      await this.drain();
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
  }

  private readonly inFlight = new Set<Promise<void>>();
  private readonly stranded = new Map<string, OutboundCommandRow>();

  /**
   * One round: claim as many due commands as the pacer has free write slots, and start
   * sending them. Claiming late keeps a command pending — where newer edits of the same
   * record still fold into it — until a request can actually go out (coalescing under a
   * tight limit). Returns how many it started.
   */
  async runOnce(): Promise<number> {
    const { db, system } = this.deps;
    const term = this.term;
    if (term === undefined || !term.valid()) return 0;
    // Slots freeing within CLAIM_AHEAD_MS count: the claim and the command's reads before its
    // request (mirror row, newer commands of the record) happen meanwhile, so the request is
    // in the pacer when its slot frees instead of leaving the slot idle.
    const free = this.deps.pacer?.freeSlotsFor('write', CLAIM_AHEAD_MS) ?? Number.POSITIVE_INFINITY;
    const limit = Math.min(this.deps.batchSize ?? 50, free);
    if (limit <= 0) return 0;
    await this.requeueStranded();
    const commands = await claimCommands(db, term, limit, this.worker, this.unreadTypes());
    for (const command of commands) {
      const sending = this.dispatch(term, command)
        .catch((err: unknown) => {
          // The database failed while the outcome was recorded (a failover, a hung
          // connection): the row is still 'sending'. It goes back to pending once the
          // database takes writes again, and is sent again (updates are idempotent; a create
          // looks its record up first).
          this.stranded.set(command.id, command);
          this.deps.logger.error(
            { err, command: command.id, system },
            'could not record the outcome of a send; the command will be requeued',
          );
        })
        .finally(() => this.inFlight.delete(sending));
      this.inFlight.add(sending);
    }
    return commands.length;
  }

  /** Record types whose poller has not completed a read since this term began. */
  private unreadTypes(): string[] {
    const unread = [...this.pollMarks].filter(([p, mark]) => p.lastSuccessfulRead <= mark);
    return [...new Set(unread.map(([p]) => p.recordType))];
  }

  /** Commands whose outcome could not be recorded, back to pending (kept until that works). */
  private async requeueStranded(): Promise<void> {
    for (const [id, claim] of [...this.stranded]) {
      await requeueCommand(this.deps.db, claim);
      this.stranded.delete(id);
    }
  }

  /** Resolves when every command started so far has finished. */
  async drain(): Promise<void> {
    await Promise.all([...this.inFlight]);
  }

  private async dispatch(term: HeldTerm, claimed: OutboundCommandRow): Promise<void> {
    const { db, logger, config } = this.deps;
    if (config.dryRun) {
      if (await markCommandDone(db, claimed, 'dry_run', { wouldSend: claimed.payload })) {
        this.count(claimed, 'dry_run');
        await this.audit(claimed, 'dry_run', {});
        logger.info(
          { ...logFields(claimed), decision: 'dry_run', payload: claimed.payload },
          'command not sent (DRY_RUN)',
        );
      }
      return;
    }
    // A newer command for this record may carry some of these fields (this one was retried
    // or requeued after a restart): never send an older value over a newer one.
    const unsuperseded = await pruneSupersededFields(db, claimed);
    if (claimed.operation === 'update' && Object.keys(unsuperseded).length === 0) {
      this.count(claimed, 'superseded');
      logger.info(
        { ...logFields(claimed), decision: 'superseded' },
        'command overtaken by a newer one; not sent',
      );
      return;
    }
    const inPlace = await fieldsAlreadyInPlace(db, claimed, unsuperseded);
    const fields = Object.fromEntries(
      Object.entries(unsuperseded).filter(([target]) => !inPlace.includes(target)),
    );
    if (claimed.operation === 'update' && Object.keys(fields).length === 0) {
      // A re-send whose every field the target shows already: an earlier attempt landed.
      if (await markCommandDone(db, claimed, 'sent', { alreadyInPlace: inPlace })) {
        this.count(claimed, 'superseded');
        logger.info(
          { ...logFields(claimed), decision: 'already_in_place' },
          'command not sent again: the target already holds its values',
        );
      }
      return;
    }
    const command = { ...claimed, payload: { ...claimed.payload, fields } };
    let result: SendResult;
    try {
      result = await this.send(term, command);
    } catch (err) {
      await this.failed(command, err);
      return;
    }
    // From here on the write has landed: nothing below may send it again.
    await this.succeeded(command, result);
  }

  private count(
    command: OutboundCommandRow,
    result: 'sent' | 'retry' | 'dead' | 'dry_run' | 'superseded',
  ): void {
    this.deps.metrics.commandsSent.inc({
      system: command.system,
      operation: command.operation,
      result,
    });
  }

  /** Records a landed write, links a created record, and feeds what was read and written back. */
  private async succeeded(command: OutboundCommandRow, result: SendResult): Promise<void> {
    const { db, logger } = this.deps;
    const log = logFields(command);
    const recordId = result.recordId ?? command.record_id;
    const owned = await db.transaction().execute(async (trx) => {
      if (!(await markCommandDone(trx, command, 'sent', { recordId }, result.recordId))) {
        return false;
      }
      if (command.operation === 'create' && result.recordId !== undefined) {
        await this.linkCreated(trx, command, result);
      }
      if (command.operation === 'update' && result.record !== undefined) {
        await this.markLanded(trx, command, result.record);
      }
      return true;
    });
    if (!owned) {
      // Taken over meanwhile (requeued by a successor): its new claimer decides; a create
      // looks its origin id up first, an update is idempotent.
      logger.warn({ ...log, decision: 'lost_claim' }, 'command sent, but no longer ours to record');
      return;
    }
    this.count(command, 'sent');
    // What we read and wrote goes through the inbox like any change: the mirror learns the
    // new state, the echo is recognized, and another flow of the same record sees it. A
    // record that cannot be stored (a NUL in some field) is logged, never a reason to send
    // the write again.
    for (const record of [...(result.reads ?? []), ...(result.record ? [result.record] : [])]) {
      try {
        await this.feedBack(command, record);
      } catch (err) {
        logger.warn({ ...log, err }, 'the record as written could not be fed back to the inbox');
      }
    }
    await this.audit(command, 'sent', { recordId });
    logger.info({ ...log, decision: 'sent', recordId }, 'command sent');
  }

  /** A send that failed: dead when final, otherwise back to the outbox to wait. */
  private async failed(command: OutboundCommandRow, err: unknown): Promise<void> {
    const { db, logger } = this.deps;
    const log = logFields(command);
    if (err instanceof FencedError) {
      // Not sent: this replica's lease term is over (or could not be renewed in time). The
      // row stays 'sending' under the old epoch; the next holder requeues it.
      logger.warn(
        { ...log, decision: 'fenced' },
        'command not sent: left to the next lease holder',
      );
      return;
    }
    if (err instanceof UnseenChangeError) {
      // Nothing was written: the change goes through the worker first, which may take fields
      // out of this command by policy; the command is looked at again after that.
      await this.feedBack(command, err.record);
      await markCommandRetry(
        db,
        command,
        { message: err.message, retryable: true },
        {
          afterMs: UNSEEN_CHANGE_WAIT_MS,
          uncounted: true,
        },
      );
      this.count(command, 'retry');
      logger.info({ ...log, decision: 'unseen_change' }, err.message);
      return;
    }
    const error = describeError(err);
    const wait = waitAfter(err, command.attempts, this.deps.backoffBaseMs ?? 2000);
    if (!error.retryable || (wait.uncounted !== true && command.attempts >= command.max_attempts)) {
      if (await markCommandDead(db, command, error)) {
        this.count(command, 'dead');
        await this.audit(command, 'dead', { error });
        logger.warn({ ...log, decision: 'dead', error }, 'command dead-lettered');
      }
      return;
    }
    // A newer pending update of the record takes this one's fields (the newer values win).
    const outcome = await markCommandRetry(db, command, error, wait);
    if (outcome === 'lost') return;
    this.count(command, outcome);
    logger.info(
      { ...log, decision: outcome, error, waitMs: wait.afterMs },
      'command will be retried',
    );
  }

  private async send(term: HeldTerm, command: OutboundCommandRow): Promise<SendResult> {
    const adapter = adapterOf(command.record_type);
    if (adapter === undefined) {
      throw new UpstreamError(
        command.system,
        undefined,
        false,
        `unknown record type ${command.record_type}`,
      );
    }
    const api = adapter.connect(this.deps.clients);
    if (api === undefined) {
      throw new UpstreamError(
        command.system,
        undefined,
        true,
        `the ${SYSTEM_LABEL[command.system]} side is not configured`,
      );
    }
    if (command.operation === 'create') {
      const record = await api.create(command.payload.body as Record<string, unknown>, {
        priority: 'write',
        fence: term.valid,
        parentId: command.parent_id,
        // An earlier attempt — before a crash, a lost answer, or the failure an operator
        // replayed — may have landed: look the origin id up before every POST.
        lookupFirst: true,
        // A wait (429, 5xx backoff) happens in the outbox, not here.
        once: true,
      });
      return { record, recordId: recordIdOf(record) };
    }
    const ref = { id: command.record_id!, parentId: command.parent_id };
    const known = await getMirrorRecord(this.deps.db, command.system, adapter.type, ref.id);
    return api.update(ref, fieldsOf(command), {
      priority: 'write',
      fence: term.valid,
      once: true,
      known: known?.data,
    });
  }

  private async linkCreated(
    trx: DbOrTrx,
    command: OutboundCommandRow,
    result: SendResult,
  ): Promise<void> {
    const flow = flowById(command.flow ?? '');
    if (flow === undefined || command.origin_record_id === null || result.recordId === undefined)
      return;
    const [tidsbankenId, powerofficeId] =
      command.system === 'poweroffice'
        ? [command.origin_record_id, result.recordId]
        : [result.recordId, command.origin_record_id];
    const parent =
      command.system === 'poweroffice'
        ? command.parent_id
        : ((await getMirrorRecord(trx, 'poweroffice', flow.poweroffice, powerofficeId))
            ?.parent_id ?? null);
    const link = await insertLink(trx, {
      flow: flow.id,
      tidsbankenType: flow.tidsbanken,
      tidsbankenId,
      powerofficeType: flow.poweroffice,
      powerofficeId,
      powerofficeParentId: parent,
      linkedBy: 'created',
    });
    if (link === undefined) {
      this.deps.logger.warn(
        { command: command.id, flow: flow.id, tidsbankenId, powerofficeId },
        'created record could not be linked: one side is linked already',
      );
    }
  }

  /**
   * Tells the link when our write landed (the target's own change time of the state it
   * produced): a later read of that field showing an old value is then a real edit.
   */
  private async markLanded(
    trx: DbOrTrx,
    command: OutboundCommandRow,
    record: Record<string, unknown>,
  ): Promise<void> {
    const flow = flowById(command.flow ?? '');
    const adapter = adapterOf(command.record_type);
    const landed = adapter === undefined ? undefined : record[adapter.updatedAtField];
    if (flow === undefined || command.link_id === null || typeof landed !== 'string') return;
    const link = await lockLink(trx, command.link_id);
    if (link === undefined) return;
    const inflight = link.inflight as Inflight;
    const entries = inflight[command.system] ?? {};
    let touched = false;
    for (const target of Object.keys(fieldsOf(command))) {
      const field = flow.fields.find(
        (f) => (command.system === 'tidsbanken' ? f.tidsbanken : f.poweroffice) === target,
      );
      const entry = field === undefined ? undefined : entries[field.key];
      if (entry?.command === command.id) {
        entry.landed = landed;
        touched = true;
      }
    }
    if (touched) await setLinkInflight(trx, link.id, inflight);
  }

  private async feedBack(
    command: OutboundCommandRow,
    record: Record<string, unknown>,
  ): Promise<void> {
    const adapter = adapterOf(command.record_type);
    const id = recordIdOf(record);
    if (adapter === undefined || id === undefined) return;
    const type = adapter.type;
    const updatedAt = record[adapter.updatedAtField];
    await insertInboundEvent(this.deps.db, {
      source: command.system,
      origin: 'write',
      eventId: writeFeedbackEventId(
        command.id,
        id,
        typeof updatedAt === 'string' ? updatedAt : String(Date.now()),
      ),
      eventType: `${type}.updated`,
      recordType: type,
      recordId: id,
      parentId: parentIdOf(adapter, record),
      payload: record,
      isThin: false,
      occurredAt: typeof updatedAt === 'string' ? updatedAt : null,
    });
  }

  private async audit(
    command: OutboundCommandRow,
    outcome: string,
    detail: Record<string, unknown>,
  ): Promise<void> {
    const recordId =
      (detail.recordId as string | undefined) ?? command.record_id ?? command.origin_record_id;
    if (recordId === null) return;
    await insertAuditEntries(this.deps.db, [
      {
        system:
          command.record_id === null && command.origin_system !== null
            ? command.origin_system
            : command.system,
        recordType:
          command.record_id === null && command.origin_system !== null
            ? (flowById(command.flow ?? '')?.tidsbanken ?? command.record_type)
            : command.record_type,
        recordId,
        kind: 'command',
        flow: command.flow,
        linkId: command.link_id,
        commandId: command.id,
        detail: {
          outcome,
          operation: command.operation,
          target: command.system,
          payload: command.payload,
          ...detail,
        },
      },
    ]);
  }
}
