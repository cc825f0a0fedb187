/**
 * What an idle proxied connection keeps in the worker's heap. The memory per idle
 * connection is a capacity figure (bench/capacity.ts, bench/PERF-STEPS.md); this pins the
 * parts of it that are unhitch's own choice, counted in a heap snapshot of a worker that
 * holds N idle connections: the backend connect timer (a Timeout, with the closures that
 * cleared it) must be let go once the backend has connected.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { WORKER_MAX_SEMI_SPACE_MIB } from '../../src/cluster/worker-heap.js';
import { eventually } from '../kit/eventually.js';
import { heapCensus } from '../kit/heap-census.js';
import { makeCertificate } from '../kit/pki.js';
import { closeBackend, connectClient, startBackend } from '../kit/proxy-fixture.js';
import { startSingleWorker } from '../kit/unhitch-process.js';

const IDLE_CONNECTIONS = 300;

test('idle connections: the worker keeps no timer and few closures of its own per proxied connection', {
  timeout: 60_000,
}, async (t) => {
  const backend = await startBackend((socket) => socket.on('error', () => {}));
  t.after(() => closeBackend(backend));
  const census = heapCensus();
  t.after(() => census.cleanup());
  const cert = makeCertificate('idle', ['localhost']);
  const { unhitch, port, workerPid } = await startSingleWorker(
    backend.port,
    cert.combinedPath,
    [],
    { env: { NODE_OPTIONS: census.nodeOptions } },
  );
  t.after(() => unhitch.kill('SIGKILL'));

  const clients: TLSSocket[] = [];
  t.after(() => {
    for (const client of clients) client.destroy();
  });
  // One connection before the first snapshot: code and caches built by the first one are
  // then in both, and the difference is what the other connections keep.
  clients.push(await connectClient(port));
  await eventually(() => (backend.sockets.size === 1 ? true : undefined), 20_000, 'one backend');
  const before = await census.tally(workerPid);
  for (let i = 1; i < IDLE_CONNECTIONS; i++) clients.push(await connectClient(port));
  await eventually(
    () => (backend.sockets.size === IDLE_CONNECTIONS ? true : undefined),
    20_000,
    `${IDLE_CONNECTIONS} backend connections`,
  );
  // The worker runs with the young-generation cap (the census flags do not size it).
  assert.match(
    readFileSync(`/proc/${workerPid}/cmdline`, 'utf8'),
    new RegExp(`--max-semi-space-size=${WORKER_MAX_SEMI_SPACE_MIB}\0`),
  );
  const counts = await census.count(workerPid, ['TLSSocket', 'Timeout']);
  const timeouts = counts.get('Timeout') ?? 0;
  t.diagnostic(
    `${IDLE_CONNECTIONS} idle connections: ${JSON.stringify(Object.fromEntries(counts))}`,
  );
  assert.equal(counts.get('TLSSocket'), IDLE_CONNECTIONS, 'the census sees every connection');
  // node:tls keeps one Timeout per server socket (its handshake timer object); a second one
  // per connection would be ours.
  assert.ok(
    timeouts < IDLE_CONNECTIONS * 1.5,
    `${timeouts} Timeout objects for ${IDLE_CONNECTIONS} idle connections`,
  );

  // Closures per idle connection: node's own (TLSSocket's, a few) plus ours. The data plane
  // keeps one ProxiedPair per connection and shares its listener functions; when each
  // listener was a closure over the connection, an idle connection kept at least 24 closures
  // and 15 contexts (bench/PERF-STEPS.md, Node 24 memory), 9 and 7 since.
  const after = await census.tally(workerPid);
  const added = (prefix: string): number => {
    let count = 0;
    for (const [kind, entry] of after.byKind)
      if (kind.startsWith(prefix)) count += entry.count - (before.byKind.get(kind)?.count ?? 0);
    return count / (IDLE_CONNECTIONS - 1);
  };
  const closures = added('closure:');
  const pairs = added('object:ProxiedPair');
  t.diagnostic(`per idle connection: ${closures.toFixed(2)} closures, ${pairs.toFixed(2)} pairs`);
  assert.ok(pairs > 0.99 && pairs < 1.01, `${pairs} ProxiedPair objects per connection`);
  assert.ok(closures < 14, `${closures.toFixed(2)} closures per idle connection`);
});
