/**
 * A 30-second soak: a wt-load-like WebSocket loop against bittorrent-tracker behind the
 * real binary, sampling the worker's RSS every second. After warm-up RSS must be flat:
 * the last 10 s may not peak more than 20 MiB above the first 10 s. (Window against window,
 * not against a figure from before the load: how far V8's heap grows first depends on the
 * V8 version; on Node 24 it is the worker semi-space cap, src/cluster/worker-heap.ts, that
 * keeps it from growing by ~100 MiB during this test.)
 * (bench/soak.ts runs the same loop for minutes.)
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import TrackerServer from 'bittorrent-tracker/server';
import { makeCertificate } from '../kit/pki.js';
import { freePort } from '../kit/ports.js';
import { sampleProcess } from '../kit/proc.js';
import { type LoopTotals, trackerLoop } from '../kit/tracker-loop.js';
import { startSingleWorker } from '../kit/unhitch-process.js';

const WARMUP_MS = 5_000;
const SOAK_MS = 30_000;
const WINDOW_MS = 10_000;
const CONCURRENCY = 12;
const FLAT_RSS_BYTES = 20 * 1024 * 1024;
const MiB = 1024 * 1024;

test('soak: 30 s of WebSocket announces through the binary, worker RSS flat', {
  timeout: 90_000,
}, async (t) => {
  const tracker = new TrackerServer({ udp: false, http: false, ws: true, stats: false });
  const trackerPort = await freePort();
  await new Promise<void>((resolve) => tracker.listen(trackerPort, '127.0.0.1', resolve));
  t.after(() => tracker.close());
  const cert = makeCertificate('soak', ['localhost']);
  // A 4 MiB semi-space (production: 16) so the heap reaches its working size within the
  // warm-up on a loaded machine too; a leak grows with the work done whatever its size.
  const { unhitch, port, workerPid } = await startSingleWorker(trackerPort, cert.combinedPath, [], {
    env: { NODE_OPTIONS: '--max-semi-space-size=4' },
  });
  t.after(() => unhitch.kill('SIGKILL'));

  const totals: LoopTotals = { announces: 0, sessions: 0, errors: 0 };
  const started = Date.now();
  const endAt = started + WARMUP_MS + SOAK_MS;
  const loop = trackerLoop(
    `wss://localhost:${port}/`,
    CONCURRENCY,
    () => Date.now() >= endAt,
    totals,
  );
  const samples: Array<{ atMs: number; rssBytes: number; fds: number }> = [];
  while (Date.now() < endAt) {
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const atMs = Date.now() - started - WARMUP_MS;
    if (atMs >= 0) samples.push({ atMs, ...sampleProcess(workerPid) });
  }
  await loop;

  const maxRss = (from: number, to: number) =>
    Math.max(...samples.filter((s) => s.atMs >= from && s.atMs < to).map((s) => s.rssBytes));
  const firstMax = maxRss(0, WINDOW_MS);
  const lastMax = maxRss(SOAK_MS - WINDOW_MS, SOAK_MS + 1_000);
  t.diagnostic(
    `${totals.sessions} sessions, ${totals.announces} announces, ${totals.errors} errors; RSS per s (MiB): ${samples.map((s) => (s.rssBytes / MiB).toFixed(0)).join(' ')}; fds ${samples[0]?.fds} → ${samples[samples.length - 1]?.fds}`,
  );
  assert.ok(samples.length >= 25, `${samples.length} samples`);
  assert.ok(totals.announces >= 1_000, `only ${totals.announces} announces`);
  assert.equal(totals.errors, 0, 'every session got its announce response');
  assert.ok(
    lastMax - firstMax < FLAT_RSS_BYTES,
    `RSS grew: first 10 s max ${(firstMax / MiB).toFixed(1)} MiB, last 10 s max ${(lastMax / MiB).toFixed(1)} MiB`,
  );
  assert.deepEqual(unhitch.workerPids(), [workerPid], 'the worker never restarted');
});
