/**
 * `unhitch_active_connections` equals the connections open right now, read through the real
 * metrics endpoint of the real binary after every way a connection can fail before (and
 * after) the splice; and proxy-proxy clients that leave before their header are reported
 * at once, with their address, and are reached by drain and destroy.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import { type TestContext, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { DEFAULT_TLS } from '../../src/config/model.js';
import { UNRECOGNIZED_NAME_ALERT } from '../../src/tls/client-hello.js';
import { startBlackHole } from '../helpers/black-hole.js';
import { captureClientHello, heldHelloSocket } from '../helpers/client-hello.js';
import { eventually } from '../kit/eventually.js';
import { makeCertificate } from '../kit/pki.js';
import { freePort } from '../kit/ports.js';
import {
  closeBackend,
  connectClient,
  type RunningProxy,
  readAll,
  startBackend,
  startProxy,
  waitFor,
} from '../kit/proxy-fixture.js';
import { scrapeMetrics } from '../kit/scrape.js';
import { startUnhitch, type UnhitchProcess } from '../kit/unhitch-process.js';

const cert = makeCertificate('gauge', ['localhost']);

interface Scraper {
  /** One scrape: series name (with labels) → value. */
  scrape(): Promise<Map<string, number>>;
  /** Polls until the failure counter for `reason` reaches `count`. */
  failures(reason: string, count: number): Promise<void>;
  /** Polls until the gauge reads `count`. */
  active(count: number): Promise<void>;
  /** Polls until `series` reads `value`. */
  until(series: string, value: number): Promise<void>;
}

function scraper(metricsPort: number): Scraper {
  const scrape = (): Promise<Map<string, number>> => scrapeMetrics(metricsPort);
  const until = async (series: string, count: number): Promise<void> => {
    let last: number | undefined;
    const deadline = Date.now() + 10_000;
    for (;;) {
      last = (await scrape()).get(series);
      if (last === count) return;
      if (Date.now() > deadline) assert.fail(`${series} is ${last}, expected ${count}`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  };
  return {
    scrape,
    failures: (reason, count) =>
      until(`unhitch_connection_failures_total{reason="${reason}"}`, count),
    active: (count) => until('unhitch_active_connections', count),
    until,
  };
}

/** After the failure counter moved, the gauge must already be back (same tick in the worker). */
async function assertGaugeAfter(metrics: Scraper, reason: string, active = 0): Promise<void> {
  await metrics.failures(reason, 1);
  const samples = await metrics.scrape();
  assert.equal(samples.get('unhitch_active_connections'), active, `gauge after ${reason}`);
}

/** The binary with one worker and a metrics endpoint, stopped after the test. */
async function startWithMetrics(
  t: TestContext,
  backendPort: number,
  extra: readonly string[],
): Promise<{ port: number; metrics: Scraper; unhitch: UnhitchProcess }> {
  const port = await freePort();
  const metricsPort = await freePort();
  const unhitch = startUnhitch([
    `--frontend=[127.0.0.1]:${port}`,
    `--backend=[127.0.0.1]:${backendPort}`,
    '--workers=1',
    `--metrics=127.0.0.1:${metricsPort}`,
    ...extra,
    cert.combinedPath,
  ]);
  t.after(() => unhitch.kill('SIGKILL'));
  await unhitch.waitForLog((line) => line.msg === 'worker ready');
  const metrics = scraper(metricsPort);
  await metrics.active(0);
  return { port, metrics, unhitch };
}

/** Sends `bytes` and a FIN on plain TCP, reading whatever comes back. */
async function sendAndEnd(port: number, bytes: string): Promise<void> {
  const socket = await rawConnect(port);
  socket.end(bytes);
  socket.resume();
}

function rawConnect(port: number): Promise<Socket> {
  const socket = netConnect(port, '127.0.0.1');
  socket.on('error', () => {});
  return once(socket, 'connect').then(() => socket);
}

test('gauge: TLS-phase failures and a black-holed backend each leave it at 0', {
  timeout: 60_000,
}, async (t) => {
  const hole = await startBlackHole();
  t.after(() => hole.close());
  // The timeouts are windows in which a scrape must see the connection counted: 2.5 s, so
  // a loaded machine's slow scrape (through the primary) does not miss them.
  const { port, metrics } = await startWithMetrics(t, hole.port, [
    '--sni-nomatch-abort',
    '--ssl-handshake-timeout=2.5',
    '--backend-connect-timeout=2.5',
  ]);

  // not_tls: an HTTP request on the TLS port.
  await sendAndEnd(port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  await assertGaugeAfter(metrics, 'not_tls');

  // handshake_error: TLS 1.1 against the default TLS 1.2+ policy.
  await assert.rejects(
    connectClient(port, {
      minVersion: 'TLSv1.1',
      maxVersion: 'TLSv1.1',
      ciphers: 'DEFAULT@SECLEVEL=0',
    }),
    { code: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION' },
  );
  await assertGaugeAfter(metrics, 'handshake_error');

  // sni_nomatch: a name no certificate has, under sni-nomatch-abort.
  await assert.rejects(connectClient(port, { servername: 'nobody.example' }));
  await assertGaugeAfter(metrics, 'sni_nomatch');

  // handshake_timeout: connected, silent. It counts while it is open.
  const silent = await rawConnect(port);
  await metrics.active(1);
  await assertGaugeAfter(metrics, 'handshake_timeout');
  silent.destroy();

  // client_reset during the handshake: half a ClientHello, then RST.
  const resetter = await rawConnect(port);
  resetter.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]));
  await metrics.active(1);
  resetter.resetAndDestroy();
  await assertGaugeAfter(metrics, 'client_reset');

  // backend_connect_timeout: the connection counts while the backend connect hangs.
  const waiting = await connectClient(port);
  const ended = readAll(waiting).catch(() => Buffer.alloc(0));
  waiting.write('anyone there?');
  await metrics.active(1);
  await assertGaugeAfter(metrics, 'backend_connect_timeout');
  await ended;
});

test('gauge: proxy-proxy failures, a live pair, a reset pair and a refused backend', {
  timeout: 60_000,
}, async (t) => {
  const backend = await startBackend((socket) => socket.pipe(socket));
  let backendOpen = true;
  t.after(() => {
    if (backendOpen) closeBackend(backend);
  });
  const { port, metrics } = await startWithMetrics(t, backend.port, [
    '--proxy-proxy',
    '--ssl-handshake-timeout=2.5',
  ]);

  await sendAndEnd(port, 'GET / HTTP/1.1\r\n\r\n');
  await assertGaugeAfter(metrics, 'proxy_header_invalid');

  await sendAndEnd(port, 'PROXY TCP4 192.0.2.1');
  await assertGaugeAfter(metrics, 'proxy_header_incomplete');

  const silent = await rawConnect(port);
  await metrics.active(1);
  await assertGaugeAfter(metrics, 'proxy_header_timeout');
  silent.destroy();

  // A live pair counts once; a normal end brings the gauge back to 0.
  const header = 'PROXY TCP4 192.0.2.1 192.0.2.2 5555 443\r\n';
  const secureThroughHeader = async () => {
    const raw = await rawConnect(port);
    raw.write(header);
    const client = tlsConnect({ socket: raw, servername: 'localhost', rejectUnauthorized: false });
    client.on('error', () => {});
    await once(client, 'secureConnect');
    return { client, raw };
  };
  const openPair = async () => {
    const pair = await secureThroughHeader();
    pair.client.write('ping');
    await once(pair.client, 'data');
    return pair;
  };
  const { client: live } = await openPair();
  await metrics.active(1);
  const done = readAll(live);
  live.end();
  await done;
  await metrics.active(0);

  const reset = await openPair();
  await metrics.active(1);
  // RST under the TLS layer (a TLSSocket has no TCP handle of its own). Nothing in flight:
  // a normal hang-up, counted apart from failures.
  reset.raw.resetAndDestroy();
  await metrics.until('unhitch_client_abrupt_ends_total', 1);
  assert.equal((await metrics.scrape()).get('unhitch_active_connections'), 0);

  closeBackend(backend);
  backendOpen = false;
  const { client: refused } = await secureThroughHeader();
  refused.resume();
  await once(refused, 'close');
  await assertGaugeAfter(metrics, 'backend_refused');
});

/**
 * In-process proxy-proxy with a header timeout far beyond any test's: a line the timer
 * logged could not arrive in time, and nothing but our own code closes a silent client.
 */
async function startPatientProxyProxy(t: TestContext): Promise<RunningProxy> {
  const backend = await startBackend((socket) => socket.resume());
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port, {
    proxyProxy: true,
    sslHandshakeTimeoutMs: 600_000,
  });
  t.after(() => proxy.close());
  return proxy;
}

test('proxy-proxy: a client that leaves before its header is logged at once, with its address', async (t) => {
  const proxy = await startPatientProxyProxy(t);

  const finisher = await rawConnect(proxy.port);
  const finisherPort = finisher.localPort;
  finisher.end('PROXY TCP4 192.0.2.1 ');
  finisher.resume();
  await waitFor(() => proxy.log.withReason('proxy_header_incomplete').length === 1, 5_000);
  const [incomplete] = proxy.log.withReason('proxy_header_incomplete');
  assert.equal(incomplete?.client, `127.0.0.1:${finisherPort}`);
  assert.match(String((incomplete?.err as { message?: string })?.message), /after 21 bytes/);

  const resetter = await rawConnect(proxy.port);
  t.after(() => resetter.destroy());
  const resetterPort = resetter.localPort;
  resetter.write('PROXY ');
  await waitFor(() => proxy.proxy.activeConnections === 1, 5_000, 'socket tracked');
  resetter.resetAndDestroy();
  // Node 24 reports the RST, Node 22's libuv a reset that follows data as EOF: both are
  // proxy_header_incomplete while the header is owed. Either way: at once.
  const resetterLine = () =>
    proxy.log.lines.find(
      (line) =>
        line.client === `127.0.0.1:${resetterPort}` && line.reason === 'proxy_header_incomplete',
    );
  await waitFor(() => resetterLine() !== undefined, 5_000, 'the reset client');
  await waitFor(() => proxy.proxy.activeConnections === 0, 5_000, 'socket released');
  assert.equal(proxy.log.withReason('proxy_header_timeout').length, 0);
});

test('proxy-proxy: a TCP health check (connect, then FIN or RST before any byte) is info proxy_header_incomplete with the real peer, never a warning', async (t) => {
  const proxy = await startPatientProxyProxy(t);
  for (const close of ['fin', 'rst'] as const) {
    const probe = await rawConnect(proxy.port);
    t.after(() => probe.destroy());
    const probePort = probe.localPort;
    await waitFor(() => proxy.proxy.activeConnections === 1, 5_000, 'probe tracked');
    if (close === 'fin') probe.end();
    else probe.resetAndDestroy();
    const line = () =>
      proxy.log.lines.find((candidate) => candidate.client === `127.0.0.1:${probePort}`);
    await waitFor(() => line() !== undefined, 5_000, `the ${close} probe's line`);
    assert.equal(line()?.reason, 'proxy_header_incomplete', `${close}: ${JSON.stringify(line())}`);
    assert.equal(line()?.level, 30, `${close}: logged at info`);
    assert.match(String((line()?.err as { message?: string })?.message), /after 0 bytes/);
    await waitFor(() => proxy.proxy.activeConnections === 0, 5_000, 'probe released');
  }
  assert.deepEqual(
    proxy.log.lines.filter((line) => line.level >= 40),
    [],
    'no warning for a health check',
  );
});

test('proxy-proxy: drain and destroy reach a client still owing its header', async (t) => {
  const proxy = await startPatientProxyProxy(t);

  const silent = await rawConnect(proxy.port);
  t.after(() => silent.destroy());
  const closed = once(silent, 'close');
  await waitFor(() => proxy.proxy.activeConnections === 1, 5_000, 'socket tracked');
  const result = await proxy.proxy.drain(50);
  assert.equal(result.forcedClosed, 1);
  await closed;
  await waitFor(() => proxy.proxy.activeConnections === 0, 5_000, 'socket released');
  // Destroyed by us: not reported as a client failure.
  assert.equal(proxy.log.lines.filter((line) => line.reason !== undefined).length, 0);
});

test('gauge: a client that stays open after the sni-nomatch-abort alert counts until it closes', async (t) => {
  const backend = await startBackend(() => {});
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port, { tls: { ...DEFAULT_TLS, sniNomatchAbort: true } });
  t.after(() => proxy.close());
  const hello = await captureClientHello({ servername: 'nobody.example' });
  // Half-open allowed: this client reads the alert and the FIN and keeps its side open.
  const client = netConnect({ port: proxy.port, host: '127.0.0.1', allowHalfOpen: true });
  client.on('error', () => {});
  await once(client, 'connect');
  const received: Buffer[] = [];
  client.on('data', (chunk: Buffer) => received.push(chunk));
  const ended = once(client, 'end');
  client.write(hello);
  await ended;
  assert.deepEqual(Buffer.concat(received), UNRECOGNIZED_NAME_ALERT);
  await waitFor(() => proxy.log.withReason('sni_nomatch').length === 1, 5_000, 'sni_nomatch');
  // The proxy's socket is still open (waiting for our FIN): it is a live connection.
  assert.equal(proxy.proxy.activeConnections, 1, 'gauge while the refused socket lingers');
  client.end();
  await waitFor(() => proxy.proxy.activeConnections === 0, 5_000, 'gauge back to 0');
});

/**
 * A client caught by SIGTERM in the middle of its ClientHello (sni-nomatch-abort: the
 * worker is reading the hello itself): `release` sends the rest.
 */
async function midHelloClient(port: number) {
  let release: () => void = () => {};
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  const raw = await rawConnect(port);
  const client = tlsConnect({
    socket: heldHelloSocket(raw, 20, released),
    servername: 'localhost',
    rejectUnauthorized: false,
  });
  client.on('error', () => {});
  return { raw, client, release };
}

/**
 * An echo backend, the binary with sni-nomatch-abort and `extra`, a client caught
 * mid-hello (the gauge counts it), then SIGTERM: resolves once the worker is draining.
 */
async function drainMidHello(t: TestContext, extra: readonly string[]) {
  const backend = await startBackend((socket) => socket.pipe(socket));
  t.after(() => closeBackend(backend));
  const { port, metrics, unhitch } = await startWithMetrics(t, backend.port, [
    '--sni-nomatch-abort',
    ...extra,
  ]);
  const client = await midHelloClient(port);
  await metrics.active(1); // accepted, its hello half read
  await drainStarted(unhitch, port);
  return { ...client, unhitch };
}

/** After SIGTERM: resolves once the worker no longer accepts (it is draining). */
async function drainStarted(unhitch: UnhitchProcess, port: number): Promise<void> {
  unhitch.kill('SIGTERM');
  await unhitch.waitForLog((line) => line.msg === 'draining');
  await eventually(
    () =>
      connectClient(port).then(
        (socket) => void socket.destroy(),
        () => true,
      ),
    10_000,
    'new connections refused',
  );
}

test('drain (SIGTERM) during the ClientHello peek: the client that finishes its hello is served, then exit 0', {
  timeout: 60_000,
}, async (t) => {
  const { client, release, unhitch } = await drainMidHello(t, ['--drain-timeout=30']);
  release();
  await once(client, 'secureConnect');
  const echo = readAll(client);
  client.end('served during the drain');
  assert.equal((await echo).toString(), 'served during the drain');
  assert.equal(await unhitch.exited(), 0);
});

test('drain (SIGTERM) during the ClientHello peek: a client that never finishes is closed at drain-timeout', {
  timeout: 60_000,
}, async (t) => {
  const stoppedAt = performance.now();
  const { raw, unhitch } = await drainMidHello(t, [
    '--drain-timeout=1',
    '--ssl-handshake-timeout=60',
  ]);
  if (!raw.destroyed) await once(raw, 'close');
  // By the drain's 1 s deadline (late on a loaded machine), not the 60 s handshake timeout.
  const closedAfterMs = performance.now() - stoppedAt;
  assert.ok(closedAfterMs < 30_000, `closed ${Math.round(closedAfterMs)} ms after SIGTERM`);
  assert.equal(await unhitch.exited(), 0);
});
