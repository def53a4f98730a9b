// The loss-bounded rate search of the macro benchmark, against made-up paths.
import { expect, test } from 'vitest';
import { searchRate } from '../../bench/rate-search.js';

/** A path that carries up to `cap` pps with `floor` % loss and drops the excess beyond it; the sender manages `sender` pps. */
function path(cap: number, sender = Infinity, floor = 0.1) {
  return async (offered: number) => {
    const sent = Math.min(offered, sender);
    const received = Math.min(sent, cap) * (1 - floor / 100);
    return { sentPps: sent, receivedPps: received, lostPercent: (100 * (sent - received)) / sent };
  };
}

test('finds a path\'s capacity from above and from below, within the resolution of its steps', async () => {
  const up = await searchRate(path(230_000), { lossBoundPercent: 1, startPps: 150_000, maxPps: 700_000, steps: 6 });
  expect(up.offeredPps).toBeGreaterThan(225_000);
  expect(up.offeredPps).toBeLessThanOrEqual(232_000);
  expect(up.lostPercent).toBeLessThanOrEqual(1);
  expect(up.probes).toHaveLength(7);
  const down = await searchRate(path(120_000), { lossBoundPercent: 1, startPps: 400_000, maxPps: 700_000, steps: 6 });
  expect(down.offeredPps).toBeGreaterThan(110_000);
  expect(down.offeredPps).toBeLessThanOrEqual(121_000);
  expect(down.probes[0]!.offeredPps).toBe(400_000);
});

test('never offers more than the sender managed, and a sender that falls short bounds the search', async () => {
  const r = await searchRate(path(1e9, 250_000), { lossBoundPercent: 1, startPps: 900_000, maxPps: 260_000, steps: 5 });
  expect(Math.max(...r.probes.map((p) => p.offeredPps))).toBe(260_000);
  expect(r.offeredPps).toBeLessThanOrEqual(250_000 / 0.98);
  expect(r.offeredPps).toBeGreaterThan(240_000);
});

test('a path that loses more than the bound at every rate gives 0 and no offered rate', async () => {
  const r = await searchRate(path(1e9, Infinity, 5), { lossBoundPercent: 1, startPps: 100_000, maxPps: 200_000, steps: 4 });
  expect(r).toMatchObject({ receivedPps: 0, offeredPps: null, lostPercent: null });
  expect(r.probes.length).toBeGreaterThan(1);
});

test('refuses rates that are not finite rather than offer them to iperf3', async () => {
  await expect(searchRate(path(1), { lossBoundPercent: 1, startPps: Number.NaN, maxPps: 100, steps: 2 })).rejects.toThrow(RangeError);
  await expect(searchRate(path(1), { lossBoundPercent: 1, startPps: 10, maxPps: Number.NaN, steps: 2 })).rejects.toThrow(RangeError);
});
