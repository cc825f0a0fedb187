#!/usr/bin/env node
import type { TLSSocket } from 'node:tls';
import { type HeapTally, heapCensus } from '../test/helpers/heap-census.js';
import {
  closeBackend,
  connectClient,
  makeCertificate,
  startBackend,
  waitFor,
} from '../test/helpers/proxy-fixture.js';
import { startSingleWorker } from '../test/helpers/unhitch-process.js';
/**
 * The JS heap an idle proxied connection keeps in the worker: heap snapshots (taken after a
 * full GC) of a one-worker unhitch before and after opening N idle TLS connections, the
 * difference divided by N, with the kinds of object that make it up. The figures behind
 * bench/PERF-STEPS.md's per-connection attribution (Node 24 memory).
 *
 *   node dist/bench/idle-heap.js [--connections=2000] [--top=25]
 */
import { parseFlags, positiveFlag } from './lib/cli-args.js';

const FLAGS = ['connections', 'top'] as const;
const PARALLEL = 50;

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2), FLAGS);
  const connections = positiveFlag(flags, 'connections', 2000);
  const top = positiveFlag(flags, 'top', 25);
  const backend = await startBackend((socket) => socket.on('error', () => {}));
  const census = heapCensus();
  const cert = makeCertificate('idle-heap', ['localhost']);
  const { unhitch, port, workerPid } = await startSingleWorker(
    backend.port,
    cert.combinedPath,
    [],
    { env: { NODE_OPTIONS: census.nodeOptions } },
  );
  const clients: TLSSocket[] = [];
  try {
    // One connection first, so that lazily built state (code, caches) is in both snapshots.
    clients.push(await connectClient(port));
    await waitFor(() => backend.sockets.size === 1, 10_000, 'the first backend connection');
    const before = await census.tally(workerPid, 120_000);
    while (clients.length < connections + 1) {
      const batch = Math.min(PARALLEL, connections + 1 - clients.length);
      clients.push(
        ...(await Promise.all(Array.from({ length: batch }, () => connectClient(port)))),
      );
    }
    await waitFor(
      () => backend.sockets.size === connections + 1,
      60_000,
      `${connections} backend connections`,
    );
    const after = await census.tally(workerPid, 120_000);
    report(before, after, connections, top);
  } finally {
    for (const client of clients) client.destroy();
    unhitch.kill('SIGKILL');
    closeBackend(backend);
    census.cleanup();
  }
}

function report(before: HeapTally, after: HeapTally, connections: number, top: number): void {
  const perConnection = (bytes: number): string => (bytes / connections).toFixed(1);
  console.log(
    `${process.version}: JS heap per idle connection ${((after.totalBytes - before.totalBytes) / connections / 1024).toFixed(2)} KiB (${connections} connections)`,
  );
  const rows = [...after.byKind]
    .map(([kind, { count, bytes }]) => {
      const was = before.byKind.get(kind) ?? { count: 0, bytes: 0 };
      return { kind, count: count - was.count, bytes: bytes - was.bytes };
    })
    .filter((row) => row.bytes !== 0)
    .sort((a, b) => b.bytes - a.bytes)
    .slice(0, top);
  console.log('bytes/conn  objects/conn  kind');
  for (const row of rows)
    console.log(
      `${perConnection(row.bytes).padStart(10)}  ${(row.count / connections).toFixed(2).padStart(12)}  ${row.kind}`,
    );
}

await main();
