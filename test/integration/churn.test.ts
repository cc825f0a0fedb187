/**
 * Connection churn through the real binary with one worker: thousands of short TLS
 * connections (full handshakes) and then the worker's open fds and RSS must come back to
 * where they were after warm-up. A leaked socket, timer or per-connection object shows
 * up here long before it shows up in production.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { churn, LEAK_SLACK, warmUp, withinLeakSlack } from '../../bench/lib/churn.js';
import { sampleProcess } from '../../bench/lib/proc.js';
import { eventually } from '../helpers/eventually.js';
import { closeBackend, makeCertificate, startBackend, waitFor } from '../helpers/proxy-fixture.js';
import { startSingleWorker } from '../helpers/unhitch-process.js';

const CHURN_MS = 20_000;
const CHURN_PARALLEL = 24;
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

  const warmup = await warmUp(port, CHURN_PARALLEL);
  // The baseline once the worker has closed every warm-up connection (backend legs gone).
  await eventually(
    () => (backend.sockets.size === 0 ? true : undefined),
    10_000,
    'warm-up connections closed',
  );
  const baseline = sampleProcess(workerPid);

  const started = Date.now();
  const counts = await churn(port, () => Date.now() - started >= CHURN_MS, CHURN_PARALLEL);
  const elapsedMs = Date.now() - started;

  // Let the worker settle: every socket closed, a GC or two for the buffers.
  let after = sampleProcess(workerPid);
  await waitFor(
    () => {
      after = sampleProcess(workerPid);
      return withinLeakSlack(baseline, after);
    },
    10_000,
    'fds and RSS back to baseline',
  ).catch(() => undefined);
  t.diagnostic(
    `warm-up ${warmup.ok}; churned ${counts.ok} connections (${counts.failed} failed) in ${elapsedMs} ms = ${Math.round((counts.ok * 1000) / elapsedMs)}/s; fds ${baseline.fds} → ${after.fds}; RSS ${(baseline.rssBytes / MiB).toFixed(1)} → ${(after.rssBytes / MiB).toFixed(1)} MiB`,
  );
  assert.equal(counts.failed, 0, 'no short connection failed');
  assert.ok(counts.ok >= 2_000, `only ${counts.ok} connections in ${elapsedMs} ms`);
  assert.ok(after.fds <= baseline.fds + LEAK_SLACK.fds, `fds ${baseline.fds} → ${after.fds}`);
  assert.ok(
    after.rssBytes <= baseline.rssBytes + LEAK_SLACK.rssBytes,
    `RSS ${baseline.rssBytes} → ${after.rssBytes}`,
  );
  assert.deepEqual(unhitch.workerPids(), [workerPid], 'the worker never restarted');
  const failures = unhitch.lines.filter((line) => typeof line.reason === 'string');
  assert.deepEqual(failures, [], 'no connection failed on the proxy side');
});
