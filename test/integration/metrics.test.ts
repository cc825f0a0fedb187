import assert from 'node:assert/strict';
import cluster, { type Worker } from 'node:cluster';
import { request as httpRequest } from 'node:http';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import {
  createWorkerMetrics,
  isLoopbackHost,
  type MetricsServer,
  startMetricsServer,
} from '../../src/ops/metrics.js';

const WORKER_COUNT = 2;
const READY_TIMEOUT_MS = 15_000;
const fixturePath = fileURLToPath(new URL('../fixtures/metrics-worker.js', import.meta.url));
const silentLogger = pino({ level: 'silent' });

/** `name{labels}` → value, from Prometheus text exposition. */
function parseExposition(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const split = line.lastIndexOf(' ');
    samples.set(line.slice(0, split), Number(line.slice(split + 1)));
  }
  return samples;
}

function sample(samples: Map<string, number>, key: string): number {
  const value = samples.get(key);
  assert.notEqual(value, undefined, `missing sample ${key}`);
  return value as number;
}

function fetchText(
  port: number,
  path: string,
  method = 'GET',
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const options = { host: '127.0.0.1', port, path, method, timeout: 10_000 };
    const request = httpRequest(options, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        body += chunk;
      });
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
    });
    request.on('timeout', () => request.destroy(new Error('metrics request timed out')));
    request.on('error', reject);
    request.end();
  });
}

function forkReadyWorker(): Promise<Worker> {
  const worker = cluster.fork();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('worker not ready in time')), READY_TIMEOUT_MS);
    worker.on('message', (message: { type?: string }) => {
      if (message?.type === 'metrics-worker-ready') {
        clearTimeout(timer);
        resolve(worker);
      }
    });
    worker.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`worker exited early with ${code}`));
    });
  });
}

function stopWorker(worker: Worker): Promise<void> {
  if (worker.isDead()) return Promise.resolve();
  return new Promise((resolve) => {
    worker.once('exit', () => resolve());
    worker.process.kill('SIGKILL');
  });
}

const workers: Worker[] = [];
let server: MetricsServer | undefined;

before(async () => {
  cluster.setupPrimary({ exec: fixturePath, silent: false });
  for (let n = 0; n < WORKER_COUNT; n++) workers.push(await forkReadyWorker());
  server = await startMetricsServer({
    address: { kind: 'tcp', host: '127.0.0.1', port: 0 },
    logger: silentLogger,
  });
});

after(async () => {
  await server?.close();
  await Promise.all(workers.map(stopWorker));
});

test('primary sums worker counters, gauges and histograms exactly', async () => {
  assert.ok(server);
  const response = await fetchText(server.port, '/metrics');
  assert.equal(response.status, 200);
  const samples = parseExposition(response.body);
  // Workers have ids 1 and 2; see test/fixtures/metrics-worker.ts for the formulas.
  assert.equal(sample(samples, 'unhitch_connections_accepted_total'), 4 + 5);
  assert.equal(sample(samples, 'unhitch_connections_closed_total'), 2 + 2);
  assert.equal(sample(samples, 'unhitch_active_connections'), 2 + 3);
  assert.equal(sample(samples, 'unhitch_handshakes_total{kind="full"}'), 1 + 2);
  assert.equal(sample(samples, 'unhitch_handshakes_total{kind="resumed"}'), 2 + 4);
  assert.equal(sample(samples, 'unhitch_connection_failures_total{reason="backend_refused"}'), 3);
  assert.equal(sample(samples, 'unhitch_connection_failures_total{reason="not_tls"}'), 2);
  assert.equal(sample(samples, 'unhitch_connection_failures_total{reason="shutdown"}'), 0);
  assert.equal(sample(samples, 'unhitch_bytes_total{direction="client_to_backend"}'), 6000);
  assert.equal(sample(samples, 'unhitch_bytes_total{direction="backend_to_client"}'), 3000);

  assert.equal(sample(samples, 'unhitch_backend_connect_duration_seconds_count'), 3);
  assert.ok(
    Math.abs(sample(samples, 'unhitch_backend_connect_duration_seconds_sum') - 0.006) < 1e-9,
  );
  assert.equal(sample(samples, 'unhitch_backend_connect_duration_seconds_bucket{le="0.001"}'), 0);
  assert.equal(sample(samples, 'unhitch_backend_connect_duration_seconds_bucket{le="0.0025"}'), 3);
  assert.equal(sample(samples, 'unhitch_handshake_duration_seconds_count'), 9);
  assert.ok(Math.abs(sample(samples, 'unhitch_handshake_duration_seconds_sum') - 0.09) < 1e-9);
  assert.equal(sample(samples, 'unhitch_handshake_duration_seconds_bucket{le="0.005"}'), 0);
  assert.equal(sample(samples, 'unhitch_handshake_duration_seconds_bucket{le="0.01"}'), 9);
  assert.equal(sample(samples, 'unhitch_handshake_duration_seconds_bucket{le="+Inf"}'), 9);

  for (const worker of ['1', '2']) {
    const cpu = sample(samples, `unhitch_process_cpu_seconds_total{worker="${worker}"}`);
    assert.ok(cpu > 0, `worker ${worker} cpu seconds ${cpu}`);
    // perf_hooks.monitorEventLoopDelay percentiles, sampled since the worker started.
    const lagP99 = sample(samples, `unhitch_nodejs_eventloop_lag_p99_seconds{worker="${worker}"}`);
    assert.ok(lagP99 >= 0 && lagP99 < 10, `worker ${worker} event-loop p99 ${lagP99}`);
  }
});

test('metrics endpoint answers 404 elsewhere and 405 for other methods', async () => {
  assert.ok(server);
  assert.equal((await fetchText(server.port, '/')).status, 404);
  assert.equal((await fetchText(server.port, '/metrics', 'POST')).status, 405);
});

test('startMetricsServer refuses non-loopback and wildcard addresses', async () => {
  for (const host of ['0.0.0.0', '192.0.2.10', '::', undefined]) {
    await assert.rejects(
      startMetricsServer({ address: { kind: 'tcp', host, port: 0 }, logger: silentLogger }),
      (err: { code?: string }) => err.code === 'UNHITCH_METRICS_ADDRESS',
      `host ${host}`,
    );
  }
});

test('isLoopbackHost', () => {
  for (const host of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) {
    assert.equal(isLoopbackHost(host), true, host);
  }
  for (const host of ['0.0.0.0', '10.0.0.1', '::', 'example.com', '128.0.0.1', undefined]) {
    assert.equal(isLoopbackHost(host), false, String(host));
  }
});

test('worker registry counts observer events locally', async () => {
  let live = 0;
  const metrics = createWorkerMetrics({
    workerId: 7,
    collectProcessMetrics: false,
    activeConnections: () => live,
  });
  metrics.observer.connectionAccepted();
  metrics.observer.connectionAccepted();
  metrics.observer.connectionClosed({ clientToBackendBytes: 5, backendToClientBytes: 7 });
  live = 1;
  let samples = parseExposition(await metrics.registry.metrics());
  assert.equal(sample(samples, 'unhitch_active_connections'), 1);
  assert.equal(sample(samples, 'unhitch_connections_accepted_total'), 2);
  assert.equal(sample(samples, 'unhitch_bytes_total{direction="backend_to_client"}'), 7);
  live = 42;
  samples = parseExposition(await metrics.registry.metrics());
  assert.equal(sample(samples, 'unhitch_active_connections'), 42, 'read at scrape time');
});
