// The offloaded loop's split of UDP_GRO messages into datagrams, on a loop without fds.
import { expect, test } from 'vitest';
import { C, COUNTER_COUNT } from '../../../src/dataplane/counters.js';
import { PeerTable } from '../../../src/dataplane/peers.js';
import { CONTROL_WORDS } from '../../../src/worker/init.js';
import { ForwardLoop } from '../../../src/worker/loop.js';
import { dataplaneContext } from '../../../src/worker/rehearsal.js';

test('a message with more datagrams than the batch holds is counted as one dropped datagram; the messages after it are still split', () => {
  const ctx = dataplaneContext(new PeerTable(4), 1, Uint8Array.of(2, 0, 0, 0, 0, 1), 0x0afe0100, 1450, 8472, 2, new Float64Array(COUNTER_COUNT));
  const io = { tunFd: -1, rxFd: -1, sendFds: new Int32Array(2).fill(-1), wakeFd: -1, rehearsal: undefined };
  const loop = new ForwardLoop(0, ctx, io, 64, new SharedArrayBuffer(CONTROL_WORDS * 4), { vnet: true, gso: true, gro: true, uso: true });
  try {
    // Message 0: 5000 bytes in 1-byte segments (more than any kernel joins). Message 1: two
    // 30-byte datagrams that are not VXLAN (no I flag), which decap counts one by one.
    loop.rxLens[0] = 5000;
    loop.rxSegs[0] = 1;
    loop.rxLens[1] = 60;
    loop.rxSegs[1] = 30;
    loop.fromUnderlay(ctx.table.beginRead(0), 2);
    const c = ctx.counters;
    expect(c[C.rx_drop_batch_full]).toBe(1);
    expect(c[C.rx_datagrams]).toBe(3);
    expect(c[C.rx_bytes]).toBe(5060);
    expect(c[C.rx_drop_bad_flags]).toBe(2);
    expect(c[C.tun_tx_packets]).toBe(0);
  } finally {
    loop.close();
  }
});
