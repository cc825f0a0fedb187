/**
 * Hostile clients against one in-process proxy while honest clients stream through it:
 * garbage and truncated ClientHellos, plaintext HTTP, slowloris handshakes and resets
 * mid-transfer must each end with a logged reason, and must cost the honest clients
 * nothing — every byte they send comes back, checked by SHA-256.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { once } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { CLIENT_ABRUPT_END_MESSAGE } from '../../src/proxy/connection.js';
import { captureClientHello } from '../helpers/client-hello.js';
import { makeCertificate } from '../kit/pki.js';
import { sampleProcess } from '../kit/proc.js';
import {
  closeBackend,
  connectClient,
  type LogLine,
  startBackend,
  startProxy,
  waitFor,
} from '../kit/proxy-fixture.js';
import { startSingleWorker } from '../kit/unhitch-process.js';

const HONEST_CLIENTS = 3;
const HONEST_MIN_BYTES = 8 * 1024 * 1024;
const HONEST_CHUNK_BYTES = 64 * 1024;
/** Sent but not yet echoed: the honest client waits for its echo beyond this. */
const HONEST_IN_FLIGHT_BYTES = 1024 * 1024;
const HANDSHAKE_TIMEOUT_MS = 500;
const GARBAGE_CONNECTIONS = 500;
const TRUNCATED_HELLO_CONNECTIONS = 200;
const PLAINTEXT_HTTP_CONNECTIONS = 50;
const SLOWLORIS_CONNECTIONS = 20;
const RESET_CONNECTIONS = 30;
const HOSTILE_PARALLEL = 50;
/** A slowloris trickles for this long unless the proxy cuts it first. */
const SLOWLORIS_GIVE_UP_MS = 20 * HANDSHAKE_TIMEOUT_MS;

type HostileKind = 'garbage' | 'truncated-hello' | 'plaintext-http' | 'slowloris' | 'reset';

/**
 * Each hostile kind connects from its own loopback address, so the proxy's log lines
 * (which name the client address) can be told apart even when ports are reused.
 */
const SOURCE_ADDRESS: Record<HostileKind, string> = {
  garbage: '127.0.0.11',
  'truncated-hello': '127.0.0.12',
  'plaintext-http': '127.0.0.13',
  slowloris: '127.0.0.14',
  reset: '127.0.0.15',
};

/** Opens a raw TCP connection from the kind's source address. */
function rawConnect(port: number, kind: HostileKind): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ port, host: '127.0.0.1', localAddress: SOURCE_ADDRESS[kind] });
    socket.once('connect', () => {
      socket.off('error', reject);
      // Consume whatever the server sends (TLS alerts): an unread alert would hold back
      // 'end', and with it the close this client is waiting for.
      socket.resume();
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** Resolves when the socket closes, whatever the cause. */
function closed(socket: Socket): Promise<void> {
  if (socket.destroyed && socket.closed) return Promise.resolve();
  return new Promise((resolve) => socket.once('close', () => resolve()));
}

interface HostileResult {
  readonly kind: HostileKind;
  readonly localPort: number;
  /** How long the proxy let the connection live (slowloris: bounded by the timeout). */
  readonly livedMs: number;
}

async function garbage(port: number): Promise<HostileResult> {
  const socket = await rawConnect(port, 'garbage');
  socket.on('error', () => {});
  const started = Date.now();
  const localPort = socket.localPort ?? 0;
  // Never let the first bytes look like a TLS record header with a plausible length:
  // a 0x16 start would make the server wait for the rest (a slowloris, tested apart).
  const bytes = randomBytes(randomInt(16, 1024));
  if (bytes[0] === 0x16) bytes[0] = 0x17;
  socket.end(bytes);
  await closed(socket);
  return { kind: 'garbage', localPort, livedMs: Date.now() - started };
}

async function truncatedHello(port: number, hello: Buffer): Promise<HostileResult> {
  const socket = await rawConnect(port, 'truncated-hello');
  socket.on('error', () => {});
  const started = Date.now();
  const localPort = socket.localPort ?? 0;
  socket.end(hello.subarray(0, randomInt(1, hello.length)));
  await closed(socket);
  return { kind: 'truncated-hello', localPort, livedMs: Date.now() - started };
}

async function plaintextHttp(port: number): Promise<HostileResult> {
  const socket = await rawConnect(port, 'plaintext-http');
  socket.on('error', () => {});
  const started = Date.now();
  const localPort = socket.localPort ?? 0;
  socket.write('GET /announce HTTP/1.1\r\nHost: tracker.example\r\nConnection: keep-alive\r\n\r\n');
  await closed(socket);
  return { kind: 'plaintext-http', localPort, livedMs: Date.now() - started };
}

/** Trickles a real ClientHello one byte every 100 ms and never finishes. */
async function slowloris(port: number, hello: Buffer): Promise<HostileResult> {
  const socket = await rawConnect(port, 'slowloris');
  socket.on('error', () => {});
  const started = Date.now();
  const localPort = socket.localPort ?? 0;
  const done = closed(socket);
  let stop = false;
  void done.then(() => {
    stop = true;
  });
  for (let index = 0; index < hello.length - 1 && !stop; index++) {
    socket.write(hello.subarray(index, index + 1));
    await sleep(100);
    if (Date.now() - started > SLOWLORIS_GIVE_UP_MS) break;
  }
  const lived = Date.now() - started;
  socket.destroy();
  await done;
  return { kind: 'slowloris', localPort, livedMs: stop ? lived : Number.POSITIVE_INFINITY };
}

/** A real TLS session that streams, then sends a TCP RST in the middle of the transfer. */
async function resetMidTransfer(port: number): Promise<HostileResult> {
  const raw = await rawConnect(port, 'reset');
  raw.on('error', () => {});
  const started = Date.now();
  const localPort = raw.localPort ?? 0;
  const tls = tlsConnect({ socket: raw, servername: 'localhost', rejectUnauthorized: false });
  tls.on('error', () => {});
  await once(tls, 'secureConnect');
  const chunk = randomBytes(16 * 1024);
  let received = 0;
  tls.on('data', (data: Buffer) => {
    received += data.length;
  });
  for (let index = 0; index < 16; index++) tls.write(chunk);
  await waitFor(() => received >= 64 * 1024, 5_000, 'echo before the reset');
  raw.resetAndDestroy();
  return { kind: 'reset', localPort, livedMs: Date.now() - started };
}

/** Runs `count` jobs with at most `parallel` in flight. */
async function pool<T>(count: number, parallel: number, job: () => Promise<T>): Promise<T[]> {
  const results: T[] = [];
  let next = 0;
  const lane = async () => {
    while (next < count) {
      next += 1;
      results.push(await job());
    }
  };
  await Promise.all(Array.from({ length: parallel }, lane));
  return results;
}

interface HonestResult {
  readonly sentBytes: number;
  readonly receivedBytes: number;
  readonly sentSha256: string;
  readonly receivedSha256: string;
}

/**
 * Sends random chunks (respecting backpressure) until at least HONEST_MIN_BYTES have gone
 * AND `keepGoing` says the flood is over, then ends and reads the echo to its end.
 */
async function honestTransfer(port: number, keepGoing: () => boolean): Promise<HonestResult> {
  const client: TLSSocket = await connectClient(port);
  const sent = createHash('sha256');
  const received = createHash('sha256');
  let sentBytes = 0;
  let receivedBytes = 0;
  client.on('data', (chunk: Buffer) => {
    received.update(chunk);
    receivedBytes += chunk.length;
  });
  const ended = once(client, 'end');
  while (sentBytes < HONEST_MIN_BYTES || keepGoing()) {
    const chunk = randomBytes(HONEST_CHUNK_BYTES);
    sent.update(chunk);
    sentBytes += chunk.length;
    if (!client.write(chunk)) await once(client, 'drain');
    // Paced by the echo, so the transfer overlaps the whole flood instead of racing ahead.
    while (sentBytes - receivedBytes > HONEST_IN_FLIGHT_BYTES) await once(client, 'data');
  }
  client.end();
  await ended;
  client.destroy();
  return {
    sentBytes,
    receivedBytes,
    sentSha256: sent.digest('hex'),
    receivedSha256: received.digest('hex'),
  };
}

/** Failure lines (those with a reason) of the clients from this source address. */
/**
 * The line each connection from `address` ended with: a failure with its reason, or the
 * debug line of a client reset that lost nothing (counted as reason 'abrupt_end').
 */
function linesFrom(lines: readonly LogLine[], address: string): LogLine[] {
  return lines.filter(
    (line) =>
      (line.reason !== undefined || line.msg === CLIENT_ABRUPT_END_MESSAGE) &&
      typeof line.client === 'string' &&
      line.client.startsWith(`${address}:`),
  );
}

function reasonCounts(lines: readonly LogLine[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const line of lines) {
    const reason =
      line.reason ?? (line.msg === CLIENT_ABRUPT_END_MESSAGE ? 'abrupt_end' : '(none)');
    counts[reason] = (counts[reason] ?? 0) + 1;
  }
  return counts;
}

test('hostile clients flood the proxy while 3 honest clients stream 8 MiB each way intact', async (t) => {
  const backend = await startBackend((socket) => {
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port, { sslHandshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS });
  t.after(() => proxy.close());
  const hello = await captureClientHello();
  assert.equal(hello[0], 0x16, 'captured a TLS handshake record');

  let flooding = true;
  const honest = Array.from({ length: HONEST_CLIENTS }, () =>
    honestTransfer(proxy.port, () => flooding),
  );
  const floodStarted = Date.now();
  const hostile = await Promise.all([
    pool(GARBAGE_CONNECTIONS, HOSTILE_PARALLEL, () => garbage(proxy.port)),
    pool(TRUNCATED_HELLO_CONNECTIONS, HOSTILE_PARALLEL / 2, () =>
      truncatedHello(proxy.port, hello),
    ),
    pool(PLAINTEXT_HTTP_CONNECTIONS, 10, () => plaintextHttp(proxy.port)),
    pool(SLOWLORIS_CONNECTIONS, SLOWLORIS_CONNECTIONS, () => slowloris(proxy.port, hello)),
    pool(RESET_CONNECTIONS, 5, () => resetMidTransfer(proxy.port)),
  ]);
  flooding = false;
  const floodMs = Date.now() - floodStarted;
  const honestResults = await Promise.all(honest);

  // Nothing lost for the honest clients.
  for (const [index, result] of honestResults.entries()) {
    assert.ok(result.sentBytes >= HONEST_MIN_BYTES, `client ${index} sent ${result.sentBytes}`);
    assert.equal(result.receivedBytes, result.sentBytes, `client ${index} byte count`);
    assert.equal(result.receivedSha256, result.sentSha256, `client ${index} SHA-256`);
  }
  await waitFor(() => proxy.proxy.activeConnections === 0, 5_000, 'no connection left');

  const [garbageResults, truncatedResults, httpResults, slowResults, resetResults] = hostile;
  const expectations: Array<[HostileKind, readonly HostileResult[], readonly string[]]> = [
    ['garbage', garbageResults, ['not_tls', 'handshake_error', 'client_reset']],
    ['truncated-hello', truncatedResults, ['client_reset', 'handshake_error']],
    ['plaintext-http', httpResults, ['not_tls']],
    ['slowloris', slowResults, ['handshake_timeout']],
    // A reset loses bytes (client_reset) unless every byte had already left unhitch and
    // the backend had nothing more to say (abrupt_end): which one is a race by design.
    ['reset', resetResults, ['client_reset', 'abrupt_end']],
  ];
  const summary: Record<string, unknown> = {};
  for (const [kind, results, reasons] of expectations) {
    const lines = linesFrom(proxy.log.lines, SOURCE_ADDRESS[kind]);
    const counts = reasonCounts(lines);
    summary[kind] = { connections: results.length, reasons: counts };
    // One failure line per hostile connection, each with an expected reason.
    assert.equal(lines.length, results.length, `${kind}: ${JSON.stringify(counts)}`);
    for (const line of lines) {
      const reason = line.reason ?? 'abrupt_end';
      assert.ok(reasons.includes(reason), `${kind}: reason ${reason}`);
    }
  }
  // Slowloris is cut by the handshake timeout (its reason is checked above), not by the
  // client giving up (livedMs is infinite then). No upper bound beyond that: the proxy
  // and every client share this event loop, which the honest streams keep busy, so the
  // timer fires late by however loaded the machine is.
  for (const result of slowResults) {
    assert.ok(
      result.livedMs >= HANDSHAKE_TIMEOUT_MS - 50 && Number.isFinite(result.livedMs),
      `slowloris lived ${result.livedMs} ms`,
    );
  }
  t.diagnostic(
    `flood ${floodMs} ms; slowloris cut after ${Math.min(...slowResults.map((r) => r.livedMs))}-${Math.max(...slowResults.map((r) => r.livedMs))} ms; honest bytes each way ${honestResults.map((r) => r.sentBytes).join(', ')}; ${JSON.stringify(summary)}`,
  );
});

const STREAM_TOTAL_BYTES = 256 * 1024 * 1024;
const STREAM_CHUNK_BYTES = 1024 * 1024;
const RSS_HEADROOM_BYTES = 64 * 1024 * 1024;
/** Loopback socket buffers plus TLS buffers hold a few MiB; far below this means "blocked". */
const STALLED_BELOW_BYTES = 48 * 1024 * 1024;

test('a client that never reads: 256 MiB backend stream is held back by backpressure, RSS bounded, then delivered intact', async (t) => {
  const chunk = randomBytes(STREAM_CHUNK_BYTES);
  const expected = createHash('sha256');
  for (let sent = 0; sent < STREAM_TOTAL_BYTES; sent += chunk.length) expected.update(chunk);
  const expectedSha256 = expected.digest('hex');

  let streamedBytes = 0;
  let blockedWrites = 0;
  const backend = await startBackend((socket) => {
    socket.on('error', () => {});
    socket.resume(); // the client sends nothing; drain anyway
    const pump = (): void => {
      while (streamedBytes < STREAM_TOTAL_BYTES) {
        streamedBytes += chunk.length;
        if (!socket.write(chunk)) {
          blockedWrites += 1;
          socket.once('drain', pump);
          return;
        }
      }
      socket.end();
    };
    pump();
  });
  t.after(() => closeBackend(backend));
  const cert = makeCertificate('never-reads', ['localhost']);
  const { unhitch, port, workerPid } = await startSingleWorker(backend.port, cert.combinedPath);
  t.after(() => unhitch.kill('SIGKILL'));
  const baselineRss = sampleProcess(workerPid).rssBytes;

  const client = await connectClient(port);
  // Not reading: no 'data' listener, and paused so nothing drains the socket.
  client.pause();
  let maxRss = baselineRss;
  let previousStreamed = -1;
  const deadline = Date.now() + 10_000;
  // Sample until the backend has made no progress for a full second (blocked).
  for (let stillFor = 0; stillFor < 10 && Date.now() < deadline; ) {
    await sleep(100);
    maxRss = Math.max(maxRss, sampleProcess(workerPid).rssBytes);
    stillFor = streamedBytes === previousStreamed ? stillFor + 1 : 0;
    previousStreamed = streamedBytes;
  }
  const stalledAt = streamedBytes;
  t.diagnostic(
    `stalled at ${(stalledAt / 2 ** 20).toFixed(1)} MiB, backend blocked ${blockedWrites}x, worker RSS ${(baselineRss / 2 ** 20).toFixed(1)} → max ${(maxRss / 2 ** 20).toFixed(1)} MiB`,
  );
  assert.ok(blockedWrites >= 1, 'backend write() returned false');
  assert.ok(stalledAt < STALLED_BELOW_BYTES, `backend got ${stalledAt} bytes out`);
  assert.ok(
    maxRss < baselineRss + RSS_HEADROOM_BYTES,
    `worker RSS ${maxRss} vs baseline ${baselineRss}`,
  );

  // Now read: everything the backend sent arrives, in order.
  const received = createHash('sha256');
  let receivedBytes = 0;
  client.on('data', (data: Buffer) => {
    received.update(data);
    receivedBytes += data.length;
  });
  const ended = once(client, 'end');
  client.resume();
  await ended;
  client.destroy();
  assert.equal(receivedBytes, STREAM_TOTAL_BYTES);
  assert.equal(received.digest('hex'), expectedSha256);
  assert.equal(unhitch.workerPids()[0], workerPid, 'the worker never restarted');
});
