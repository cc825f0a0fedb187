/**
 * Connection churn through the real binary with one worker: thousands of short TLS
 * connections (full handshakes) and then the worker's open fds and RSS must come back to
 * where they were after warm-up. A leaked socket, timer or per-connection object shows
 * up here long before it shows up in production.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { churn } from '../../bench/lib/churn.js';
import { sampleProcess } from '../../bench/lib/proc.js';
import { closeBackend, makeCertificate, startBackend, waitFor } from '../helpers/proxy-fixture.js';
import { startSingleWorker } from '../helpers/unhitch-process.js';

const CHURN_MS = 20_000;
const CHURN_PARALLEL = 24;
/**
 * Enough connections for V8's heap and the TLS caches to reach their working size (RSS
 * plateaus after a few thousand), bounded in time on a slow or busy machine.
 */
const WARMUP_CONNECTIONS = 3_000;
const WARMUP_MAX_MS = 15_000;
const FD_SLACK = 4;
const RSS_SLACK_BYTES = 30 * 1024 * 1024;
const MiB = 1024 * 1024;

test('churn: ~20 s of short connections through 1 worker; fds and RSS return to baseline', {
  timeout: 90_000,
}, async (t) => {
  const backend = await startBackend((socket) => {
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  t.after(() => closeBackend(backend));
  const cert = makeCertificate('churn', ['localhost']);
  const { unhitch, port, workerPid } = await startSingleWorker(backend.port, cert.combinedPath);
  t.after(() => unhitch.kill('SIGKILL'));

  const warmupStarted = Date.now();
  let warmedUp = 0;
  const warmup = await churn(
    port,
    () => warmedUp++ >= WARMUP_CONNECTIONS || Date.now() - warmupStarted >= WARMUP_MAX_MS,
    CHURN_PARALLEL,
  );
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const baseline = sampleProcess(workerPid);

  const started = Date.now();
  const counts = await churn(port, () => Date.now() - started >= CHURN_MS, CHURN_PARALLEL);
  const elapsedMs = Date.now() - started;

  // Let the worker settle: every socket closed, a GC or two for the buffers.
  let after = sampleProcess(workerPid);
  await waitFor(
    () => {
      after = sampleProcess(workerPid);
      return (
        after.fds <= baseline.fds + FD_SLACK &&
        after.rssBytes <= baseline.rssBytes + RSS_SLACK_BYTES
      );
    },
    10_000,
    'fds and RSS back to baseline',
  ).catch(() => undefined);
  t.diagnostic(
    `warm-up ${warmup.ok}; churned ${counts.ok} connections (${counts.failed} failed) in ${elapsedMs} ms = ${Math.round((counts.ok * 1000) / elapsedMs)}/s; fds ${baseline.fds} → ${after.fds}; RSS ${(baseline.rssBytes / MiB).toFixed(1)} → ${(after.rssBytes / MiB).toFixed(1)} MiB`,
  );
  assert.equal(counts.failed, 0, 'no short connection failed');
  assert.ok(counts.ok >= 2_000, `only ${counts.ok} connections in ${elapsedMs} ms`);
  assert.ok(after.fds <= baseline.fds + FD_SLACK, `fds ${baseline.fds} → ${after.fds}`);
  assert.ok(
    after.rssBytes <= baseline.rssBytes + RSS_SLACK_BYTES,
    `RSS ${baseline.rssBytes} → ${after.rssBytes}`,
  );
  assert.deepEqual(unhitch.workerPids(), [workerPid], 'the worker never restarted');
  const failures = unhitch.lines.filter((line) => typeof line.reason === 'string');
  assert.deepEqual(failures, [], 'no connection failed on the proxy side');
});
