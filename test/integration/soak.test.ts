/**
 * A short soak: 2,400 sessions of a wt-load-like WebSocket loop against bittorrent-tracker
 * behind the real binary (after 300 to warm up), sampling the worker twice a second.
 * Counted in sessions, not seconds: a loaded machine does the same work, slower. Nothing
 * may pile up:
 * - native memory: RSS beyond V8's heap high-water (test/kit/worker-memory.ts) may not
 *   peak in the last third more than 10 MiB above the first third. Not RSS itself: how far
 *   V8's old generation grows before its first mark-compact, and so RSS, depends on the
 *   connections per second, and on a loaded machine that growth fell into the measured
 *   window (87 → 118 MiB, while the heap after each mark-compact stayed at ~9 MiB);
 * - JS objects: once the loop has stopped, a heap snapshot (after V8's full GC) holds no
 *   per-connection object;
 * - the JS heap: 1,200 more sessions may not grow it, snapshot to snapshot (both after a full
 *   GC, the worker idle), by 512 KiB (some 440 bytes a session). The native criterion cannot
 *   see a JS leak (the heap's high-water is what it subtracts), nor can the census one that
 *   keeps no socket: an entry per client in a Map, a string per connection;
 * - descriptors back to where they were, every session answered, the worker never restarted.
 * (bench/soak.ts runs the same loop for minutes.)
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import TrackerServer from 'bittorrent-tracker/server';
import { type HeapTally, heapCensus } from '../kit/heap-census.js';
import { makeCertificate } from '../kit/pki.js';
import { freePort } from '../kit/ports.js';
import { sampleProcess } from '../kit/proc.js';
import { waitFor } from '../kit/proxy-fixture.js';
import { type LoopTotals, trackerLoop } from '../kit/tracker-loop.js';
import { startSingleWorker } from '../kit/unhitch-process.js';
import {
  FLAT_NATIVE_BYTES,
  nativePeaksByThirds,
  sampleWorkerMemory,
  type WorkedSample,
} from '../kit/worker-memory.js';

/** Sessions before the first sample counts, then the soak's own; windows are its thirds. */
const WARMUP_SESSIONS = 300;
const SOAK_SESSIONS = 2_400;
/** Only a machine far slower than any seen gets here (~50 sessions/s at load 15 on 2 CPUs). */
const SOAK_DEADLINE_MS = 150_000;
const SAMPLE_EVERY_MS = 500;
const CONCURRENCY = 12;
/**
 * A 4 MiB semi-space (production: 16, src/cluster/worker-heap.ts): a young generation of
 * 8 MiB is filled between two scavenges, so what V8 has committed is resident and RSS
 * beyond it is native memory. With 16 MiB, the semi-space doubling committed 16 MiB that
 * became resident over the next seconds, which showed as ±8 MiB of "native" swing.
 */
const TEST_YOUNG_GENERATION = '--max-semi-space-size=4';
const FD_SLACK = 4;
const MiB = 1024 * 1024;
/** Objects that exist once per proxied connection and never in an idle worker. */
const PER_CONNECTION_OBJECTS = ['TLSSocket', 'ProxiedPair'];
/** Sessions between the two heap snapshots, after the soak; their own deadline. */
const HEAP_SESSIONS = 1_200;
const HEAP_DEADLINE_MS = 75_000;
/** What HEAP_SESSIONS may add to the heap after a full GC: ~440 bytes a session. */
const FLAT_HEAP_BYTES = 512 * 1024;

const perConnection = (tally: HeapTally): Map<string, number> =>
  new Map(
    PER_CONNECTION_OBJECTS.map((name) => [name, tally.byKind.get(`object:${name}`)?.count ?? 0]),
  );

test('soak: 2,400 WebSocket announce sessions through the binary, no native memory, JS heap, object or fd growth', {
  timeout: 330_000,
}, async (t) => {
  const tracker = new TrackerServer({ udp: false, http: false, ws: true, stats: false });
  const trackerPort = await freePort();
  await new Promise<void>((resolve) => tracker.listen(trackerPort, '127.0.0.1', resolve));
  t.after(() => tracker.close());
  const census = heapCensus();
  t.after(() => census.cleanup());
  const cert = makeCertificate('soak', ['localhost']);
  const metricsPort = await freePort();
  const { unhitch, port, workerPid } = await startSingleWorker(
    trackerPort,
    cert.combinedPath,
    [`--metrics=127.0.0.1:${metricsPort}`],
    { env: { NODE_OPTIONS: `${census.nodeOptions} ${TEST_YOUNG_GENERATION}` } },
  );
  t.after(() => unhitch.kill('SIGKILL'));
  const idleFds = (await sampleWorkerMemory(workerPid, metricsPort, 0)).fds;

  const totals: LoopTotals = { announces: 0, sessions: 0, errors: 0 };
  const started = Date.now();
  const target = WARMUP_SESSIONS + SOAK_SESSIONS;
  const done = (): boolean => totals.sessions >= target || Date.now() - started > SOAK_DEADLINE_MS;
  const loop = trackerLoop(`wss://localhost:${port}/`, CONCURRENCY, done, totals);
  // Each sample with the sessions done when it was taken: the windows are counted in work.
  const samples: WorkedSample[] = [];
  while (!done()) {
    await new Promise((resolve) => setTimeout(resolve, SAMPLE_EVERY_MS));
    const sessions = totals.sessions;
    if (sessions < WARMUP_SESSIONS) continue;
    samples.push({
      ...(await sampleWorkerMemory(workerPid, metricsPort, Date.now() - started)),
      done: sessions,
    });
  }
  await loop;

  let fdsAfter = Number.POSITIVE_INFINITY;
  /** Once the worker's fds are back, a snapshot of its heap with no connection in it. */
  const idleHeap = async (): Promise<HeapTally> => {
    await waitFor(
      () => {
        fdsAfter = sampleProcess(workerPid).fds;
        return fdsAfter <= idleFds + FD_SLACK;
      },
      10_000,
      'worker fds back to idle',
    ).catch(() => undefined);
    // A connection still closing is gone by a later snapshot; a leak is in every one.
    let heap = await census.tally(workerPid);
    for (let taken = 1; taken < 3 && [...perConnection(heap).values()].some((n) => n > 0); taken++)
      heap = await census.tally(workerPid);
    return heap;
  };
  const heapAfterSoak = await idleHeap();
  const leftCounts = perConnection(heapAfterSoak);
  const soakSessions = totals.sessions;
  const soakErrors = totals.errors;

  const heapTarget = soakSessions + HEAP_SESSIONS;
  const heapStarted = Date.now();
  await trackerLoop(
    `wss://localhost:${port}/`,
    CONCURRENCY,
    () => totals.sessions >= heapTarget || Date.now() - heapStarted > HEAP_DEADLINE_MS,
    totals,
  );
  const heapAfterMore = await idleHeap();
  const heapGrowth = heapAfterMore.totalBytes - heapAfterSoak.totalBytes;

  const {
    native,
    first: firstMax,
    last: lastMax,
  } = nativePeaksByThirds(samples, WARMUP_SESSIONS, SOAK_SESSIONS);
  const mib = (bytes: number): string => (bytes / MiB).toFixed(0);
  const elapsedS = ((Date.now() - started) / 1000).toFixed(0);
  t.diagnostic(
    `${totals.sessions} sessions in ${elapsedS} s, ${totals.announces} announces, ${totals.errors} errors; per sample (MiB) RSS ${samples.map((s) => mib(s.rssBytes)).join(' ')}; V8 heap ${samples.map((s) => mib(s.heapCommittedBytes)).join(' ')}; beyond it ${native.map((s) => mib(s.bytes)).join(' ')}; fds ${idleFds} → ${fdsAfter}; objects left ${JSON.stringify(Object.fromEntries(leftCounts))}; heap after a full GC ${(heapAfterSoak.totalBytes / 1024).toFixed(0)} → ${(heapAfterMore.totalBytes / 1024).toFixed(0)} KiB over ${totals.sessions - soakSessions} more sessions`,
  );
  assert.ok(
    soakSessions >= target,
    `only ${soakSessions} of ${target} sessions in ${SOAK_DEADLINE_MS / 1000} s`,
  );
  assert.ok(Number.isFinite(firstMax) && Number.isFinite(lastMax), 'samples in both thirds');
  assert.equal(soakErrors, 0, 'every session got its announce response');
  assert.ok(
    lastMax - firstMax < FLAT_NATIVE_BYTES,
    `native memory grew: RSS beyond the V8 heap, first third's max ${mib(firstMax)} MiB, last third's ${mib(lastMax)} MiB`,
  );
  assert.deepEqual(
    leftCounts,
    new Map(PER_CONNECTION_OBJECTS.map((name) => [name, 0])),
    'no per-connection object outlives its session',
  );
  assert.ok(
    totals.sessions >= heapTarget,
    `only ${totals.sessions - soakSessions} of ${HEAP_SESSIONS} sessions between the heap snapshots in ${HEAP_DEADLINE_MS / 1000} s`,
  );
  assert.equal(totals.errors, 0, 'every session between the heap snapshots got its response');
  assert.ok(
    heapGrowth < FLAT_HEAP_BYTES,
    `the JS heap grew by ${(heapGrowth / 1024).toFixed(0)} KiB over ${HEAP_SESSIONS} sessions (after a full GC, the worker idle)`,
  );
  assert.deepEqual(
    perConnection(heapAfterMore),
    new Map(PER_CONNECTION_OBJECTS.map((name) => [name, 0])),
    'no per-connection object outlives its session',
  );
  assert.ok(fdsAfter <= idleFds + FD_SLACK, `fds ${idleFds} → ${fdsAfter}`);
  assert.deepEqual(unhitch.workerPids(), [workerPid], 'the worker never restarted');
});
