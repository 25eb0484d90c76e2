import { describe, expect, it } from 'vitest';
import { Pacer } from '../../src/lib/pacer.js';

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
});
