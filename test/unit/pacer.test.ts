import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Pacer } from '../../src/lib/pacer.js';

// The real Pacer on a virtual clock: setTimeout, Date.now and performance.now all advance only
// when the test says so, so "has not started yet" is a fact about the pacer, not about load.

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date', 'performance'] });
});
afterEach(() => {
  vi.useRealTimers();
});

/** Schedules a request that records when it started and ends at once. */
function recorder(pacer: Pacer) {
  const started: { name: string; at: number }[] = [];
  const run = (name: string, priority: 'write' | 'read' | 'poll' = 'read') =>
    pacer.schedule(() => {
      started.push({ name, at: Date.now() });
      return Promise.resolve(name);
    }, priority);
  return { started, run, names: () => started.map((s) => s.name) };
}

describe('Pacer.pauseFor', () => {
  it('holds every request, queued before or during the pause, until it has passed', async () => {
    const pacer = new Pacer('test', 5);
    const { started, run, names } = recorder(pacer);
    const t0 = Date.now();
    pacer.pauseFor(2_000);
    expect(pacer.isPaused).toBe(true);
    expect(pacer.freeSlotsFor('write', 10_000)).toBe(0);
    const first = run('a');
    const second = run('b', 'write');
    await vi.advanceTimersByTimeAsync(1_999);
    expect(started).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    await expect(Promise.all([first, second])).resolves.toEqual(['a', 'b']);
    expect(names().sort()).toEqual(['a', 'b']);
    expect(started.every((s) => s.at - t0 >= 2_000)).toBe(true);
    expect(pacer.isPaused).toBe(false);
    expect(pacer.freeSlotsFor('read')).toBe(3);
    pacer.clear();
  });

  it('a shorter pause does not cut a longer one short; a longer one extends it', async () => {
    const pacer = new Pacer('test', 5);
    const { started, run } = recorder(pacer);
    pacer.pauseFor(1_000);
    pacer.pauseFor(300);
    const a = run('a');
    await vi.advanceTimersByTimeAsync(500);
    expect(started).toEqual([]);
    pacer.pauseFor(1_500); // now until t = 2000
    await vi.advanceTimersByTimeAsync(1_000);
    expect(started).toEqual([]);
    await vi.advanceTimersByTimeAsync(500);
    await a;
    expect(started).toHaveLength(1);
    pacer.clear();
  });

  it('requests already running finish; only new starts wait', async () => {
    const pacer = new Pacer('test', 5);
    let release!: () => void;
    const inFlight = pacer.schedule(
      () => new Promise<string>((resolve) => (release = () => resolve('in flight'))),
      'read',
    );
    await vi.advanceTimersByTimeAsync(0);
    pacer.pauseFor(1_000);
    release();
    await expect(inFlight).resolves.toBe('in flight');
    const { started, run } = recorder(pacer);
    const later = run('later');
    await vi.advanceTimersByTimeAsync(999);
    expect(started).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    await later;
    expect(started).toHaveLength(1);
    pacer.clear();
  });
});

describe('Pacer.schedule', () => {
  it('starts at most N requests per window: the next one waits until a slot has been held a full window', async () => {
    const pacer = new Pacer('test', 3);
    const { started, run } = recorder(pacer);
    const all = Array.from({ length: 7 }, (_, i) => run(`r${i}`));
    await vi.advanceTimersByTimeAsync(0);
    expect(started).toHaveLength(3);
    await vi.advanceTimersByTimeAsync(999);
    expect(started).toHaveLength(3);
    // One window plus the slack after the first three ended.
    await vi.advanceTimersByTimeAsync(100);
    expect(started).toHaveLength(6);
    await vi.advanceTimersByTimeAsync(1_100);
    await Promise.all(all);
    expect(started).toHaveLength(7);
    // Any 1000 ms window holds at most 3 starts.
    const times = started.map((s) => s.at);
    const most = Math.max(...times.map((t) => times.filter((u) => u >= t && u < t + 1_000).length));
    expect(most).toBe(3);
    pacer.clear();
  });

  it('a fractional rate spaces requests: 0.5 per second is one request every two seconds', async () => {
    const pacer = new Pacer('test', 0.5);
    const { started, run } = recorder(pacer);
    const all = [run('a'), run('b')];
    await vi.advanceTimersByTimeAsync(1_999);
    expect(started).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(100);
    await Promise.all(all);
    expect(started[1]!.at - started[0]!.at).toBeGreaterThanOrEqual(2_000);
  });

  it('writes overtake queued reads, and reads overtake queued polls', async () => {
    const pacer = new Pacer('test', 1);
    const { run, names } = recorder(pacer);
    const all = [run('poll-1', 'poll'), run('poll-2', 'poll'), run('read', 'read')];
    all.push(run('write', 'write'));
    await vi.advanceTimersByTimeAsync(5_000);
    await Promise.all(all);
    // poll-1 took the only slot at once; the rest go by priority.
    expect(names()).toEqual(['poll-1', 'write', 'read', 'poll-2']);
  });

  it('a failed request rejects its caller and still holds its slot for the window', async () => {
    const pacer = new Pacer('test', 1);
    const failed = pacer.schedule(() => Promise.reject(new Error('boom')), 'write');
    await expect(failed).rejects.toThrow('boom');
    expect(pacer.freeSlotsFor('write')).toBe(0);
    const { started, run } = recorder(pacer);
    const next = run('next', 'write');
    await vi.advanceTimersByTimeAsync(999);
    expect(started).toEqual([]);
    await vi.advanceTimersByTimeAsync(100);
    await next;
    expect(started).toHaveLength(1);
  });
});

describe('Pacer.freeSlotsFor', () => {
  it('counts a slot still held after its request as free only when it frees within the horizon', async () => {
    const pacer = new Pacer('test', 2);
    expect(pacer.freeSlotsFor('write')).toBe(2);
    await pacer.schedule(() => Promise.resolve('done'), 'write');
    // The request ended; its slot is held for one window (+ slack) from now.
    expect(pacer.freeSlotsFor('write')).toBe(1);
    expect(pacer.freeSlotsFor('write', 25)).toBe(1);
    expect(pacer.freeSlotsFor('write', 2_000)).toBe(2);
    // A request queued for that slot takes it: counting it free again would claim twice.
    const queued = [
      pacer.schedule(() => Promise.resolve(1), 'write'),
      pacer.schedule(() => Promise.resolve(2), 'write'),
    ];
    expect(pacer.freeSlotsFor('write', 2_000)).toBe(0);
    // Lower priorities see the slots taken by writes.
    expect(pacer.freeSlotsFor('poll', 2_000)).toBe(0);
    pacer.clear();
    void queued;
  });

  it('a write sees the slots that queued polls would take as its own', () => {
    const pacer = new Pacer('test', 2);
    const polls = Array.from({ length: 4 }, () =>
      pacer.schedule(() => new Promise<void>(() => undefined), 'poll'),
    );
    expect(pacer.freeSlotsFor('poll')).toBe(0);
    expect(pacer.freeSlotsFor('write')).toBe(2);
    pacer.clear();
    void polls;
  });
});
