// Runs the worker rehearsal over loopback for every feature combination inside the namespace it
// is started in, and prints the results as one JSON line (test/netns/rehearsal.test.ts).
import process from 'node:process';
import { rehearse } from '../../dist/src/worker/rehearsal.js';

const COMBINATIONS = [
  { vnet: true, gso: true, gro: true, uso: true },
  { vnet: true, gso: true, gro: true, uso: false },
  { vnet: true, gso: true, gro: false, uso: false },
  { vnet: true, gso: false, gro: false, uso: false },
  { vnet: false, gso: false, gro: false, uso: false },
];
const mtu = Number(process.argv[2] ?? 1450);
const out = [];
for (const features of COMBINATIONS) {
  const r = await rehearse({ features, batchSize: 64, mtu, port: 8472, vni: 1, flowSockets: 8, rounds: 20, budgetMs: 60_000, singles: 50, loopback: true });
  out.push({ features, ...r });
}
process.stdout.write(`${JSON.stringify(out)}\n`);
