/*
 * The PM QoS CPU latency request (root: /dev/cpu_dma_latency is root-only).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { CpuLatencyRequest, TrafficLatencyHold } from '../../../src/control/cpu-latency.js';

beforeAll(() => {
  if (process.getuid?.() !== 0) throw new Error('the CPU latency tests need root (/dev/cpu_dma_latency)');
});

describe('CpuLatencyRequest', () => {
  it('lowers the effective request while held and restores it when released', async () => {
    const before = await CpuLatencyRequest.effective();
    const us = 4321;
    expect(before, `another process on this machine holds a CPU latency request of ${before} µs; this test needs none at or below ${us} µs`).toBeGreaterThan(us);
    const req = await CpuLatencyRequest.hold(us);
    try {
      expect(req.held).toBe(true);
      expect(await CpuLatencyRequest.effective()).toBe(us);
    } finally {
      await req.release();
    }
    expect(req.held).toBe(false);
    await req.release(); // idempotent
    expect(await CpuLatencyRequest.effective()).toBe(before);
  });

  it('names the path and the reason when the request cannot be held', async () => {
    await expect(CpuLatencyRequest.hold(0, '/nonexistent/cpu_dma_latency')).rejects.toThrow(
      'cannot hold a CPU latency request of 0 µs: open /nonexistent/cpu_dma_latency: ENOENT',
    );
    await expect(CpuLatencyRequest.hold(-1)).rejects.toThrow(RangeError);
  });
});

describe('TrafficLatencyHold', () => {
  it('takes the request when the activity count moves and withdraws it after idleMs without a move', async () => {
    const before = await CpuLatencyRequest.effective();
    const us = 4322;
    expect(before, `another process on this machine holds a CPU latency request of ${before} µs`).toBeGreaterThan(us);
    let count = 7;
    const seen: boolean[] = [];
    const hold = new TrafficLatencyHold(us, 1000, () => count, (held) => seen.push(held));
    try {
      expect(hold.checkMs).toBe(250);
      await hold.check(0);
      expect(hold.held).toBe(true);
      expect(await CpuLatencyRequest.effective()).toBe(us);
      await hold.check(999); // quiet, but not for idleMs yet
      expect(hold.held).toBe(true);
      await hold.check(1000);
      expect(hold.held).toBe(false);
      expect(await CpuLatencyRequest.effective()).toBe(before);
      await hold.check(5000); // still quiet: nothing taken
      expect(hold.held).toBe(false);
      count++;
      await hold.check(5001);
      expect(hold.held).toBe(true);
      expect(seen).toEqual([true, false, true]);
    } finally {
      await hold.stop();
    }
    expect(hold.held).toBe(false);
    expect(await CpuLatencyRequest.effective()).toBe(before);
    await hold.check(6000); // stopped: never taken again
    expect(hold.held).toBe(false);
  });

  it('stop() during a check that is taking the request leaves nothing held', async () => {
    const before = await CpuLatencyRequest.effective();
    const hold = new TrafficLatencyHold(4323, 1000, () => 1, () => undefined);
    const checking = hold.check(0);
    await hold.stop();
    await checking;
    expect(hold.held).toBe(false);
    expect(await CpuLatencyRequest.effective()).toBe(before);
  });
});
