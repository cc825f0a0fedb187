/**
 * How a client hangs up decides how loud the log is. A normal end — FIN (with or without
 * close_notify), or a reset (ECONNRESET/EPIPE) when nothing is in flight either way, as
 * WebSocket clients and load generators do after a complete exchange — logs at debug and
 * counts in unhitch_client_abrupt_ends_total. A reset that loses bytes (still queued for
 * the client) or comes mid-handshake stays a WARN `client_reset` failure.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, connect as netConnect, type Socket } from 'node:net';
import { type TestContext, test } from 'node:test';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import WebSocket, { WebSocketServer } from 'ws';
import { createWorkerMetrics } from '../../src/ops/metrics.js';
import {
  closeBackend,
  type RunningProxy,
  startBackend,
  startProxy,
  waitFor,
} from '../kit/proxy-fixture.js';

const WARN = 40;

interface Harness {
  readonly proxy: RunningProxy;
  sample(series: string): Promise<number | undefined>;
  warnings(): string[];
}

/** An in-process proxy whose observer is the real worker metrics registry. */
async function harness(t: TestContext, backendPort: number): Promise<Harness> {
  let running: RunningProxy | undefined;
  const metrics = createWorkerMetrics({
    workerId: 1,
    collectProcessMetrics: false,
    activeConnections: () => running?.proxy.activeConnections ?? 0,
  });
  const proxy = await startProxy(backendPort, {}, undefined, metrics.observer);
  running = proxy;
  t.after(() => proxy.close());
  return {
    proxy,
    async sample(series) {
      const line = (await metrics.registry.metrics())
        .split('\n')
        .find((candidate) => candidate.startsWith(`${series} `));
      return line === undefined ? undefined : Number(line.split(' ')[1]);
    },
    warnings: () =>
      proxy.log.lines
        .filter((line) => line.level >= WARN)
        .map((line) => `${line.msg} ${line.reason ?? ''}`),
  };
}

/** TLS over a TCP socket we hold, so the test can reset the TCP connection itself. */
async function clientOver(port: number): Promise<{ raw: Socket; tls: TLSSocket }> {
  const raw = netConnect(port, '127.0.0.1');
  raw.on('error', () => {});
  await once(raw, 'connect');
  const tls = tlsConnect({ socket: raw, servername: 'localhost', rejectUnauthorized: false });
  tls.on('error', () => {});
  await once(tls, 'secureConnect');
  return { raw, tls };
}

async function echoExchange(tls: TLSSocket): Promise<void> {
  tls.write('ping');
  const [data] = (await once(tls, 'data')) as [Buffer];
  assert.equal(data.toString(), 'ping');
}

test('a reset after a complete exchange is a normal end: debug, counted, no warning', async (t) => {
  const backend = await startBackend((socket) => {
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  t.after(() => closeBackend(backend));
  const { proxy, sample, warnings } = await harness(t, backend.port);

  const { raw, tls } = await clientOver(proxy.port);
  await echoExchange(tls);
  raw.resetAndDestroy();
  await waitFor(() => proxy.proxy.activeConnections === 0, 5_000, 'connection gone');
  assert.equal(await sample('unhitch_client_abrupt_ends_total'), 1);
  assert.equal(await sample('unhitch_connection_failures_total{reason="client_reset"}'), 0);
  assert.deepEqual(warnings(), []);
  assert.equal(
    proxy.log.lines.filter(
      (line) => line.msg === 'client reset the connection with nothing in flight',
    ).length,
    1,
  );

  // FIN without close_notify after an exchange: not even an abrupt end.
  const quiet = await clientOver(proxy.port);
  await echoExchange(quiet.tls);
  quiet.raw.destroy();
  await waitFor(() => proxy.proxy.activeConnections === 0, 5_000, 'connection gone');
  assert.equal(await sample('unhitch_client_abrupt_ends_total'), 1);
  assert.deepEqual(warnings(), []);
});

test('a backend that answers our FIN with a reset does not turn a normal end into a failure', async (t) => {
  const backend = await startBackend((socket) => {
    socket.on('error', () => {});
    socket.on('data', (data) => socket.write(data));
    socket.once('end', () => socket.resetAndDestroy());
  });
  t.after(() => closeBackend(backend));
  const { proxy, sample, warnings } = await harness(t, backend.port);

  const { raw, tls } = await clientOver(proxy.port);
  await echoExchange(tls);
  raw.resetAndDestroy();
  await waitFor(() => proxy.proxy.activeConnections === 0, 5_000, 'connection gone');
  assert.equal(await sample('unhitch_client_abrupt_ends_total'), 1);
  assert.deepEqual(warnings(), []);
});

test('a WebSocket client that terminates after its exchange is no warning either', async (t) => {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(server, 'listening');
  t.after(() => server.close());
  server.on('connection', (socket) => socket.on('message', (data) => socket.send(data)));
  const { proxy, warnings } = await harness(t, (server.address() as { port: number }).port);

  for (const end of ['terminate', 'close'] as const) {
    const ws = new WebSocket(`wss://127.0.0.1:${proxy.port}`, { rejectUnauthorized: false });
    await once(ws, 'open');
    ws.send('hello');
    await once(ws, 'message');
    ws[end]();
    await once(ws, 'close');
    await waitFor(() => proxy.proxy.activeConnections === 0, 5_000, `${end}: connection gone`);
  }
  assert.deepEqual(warnings(), []);
});

test('a reset with bytes still queued for the client is a WARN client_reset', async (t) => {
  const payload = Buffer.alloc(32 * 1024 * 1024, 0x61);
  let backendBlocked: (() => void) | undefined;
  const blocked = new Promise<void>((resolve) => {
    backendBlocked = resolve;
  });
  const backend = await startBackend((socket) => {
    socket.on('error', () => {});
    socket.once('data', () => {
      // More than every buffer on the way can take while the client does not read.
      if (!socket.write(payload)) backendBlocked?.();
    });
  });
  t.after(() => closeBackend(backend));
  const { proxy, sample, warnings } = await harness(t, backend.port);

  const { raw, tls } = await clientOver(proxy.port);
  tls.pause();
  tls.write('send me everything');
  await blocked;
  const clientPort = raw.localPort;
  raw.resetAndDestroy();
  await waitFor(() => proxy.proxy.activeConnections === 0, 5_000, 'connection gone');
  assert.equal(await sample('unhitch_connection_failures_total{reason="client_reset"}'), 1);
  assert.equal(await sample('unhitch_client_abrupt_ends_total'), 0);
  assert.deepEqual(warnings(), ['connection failed client_reset']);
  // Named although its socket was gone by then (its address is read at accept).
  const line = proxy.log.lines.find((candidate) => candidate.msg === 'connection failed');
  assert.equal(line?.client, `127.0.0.1:${clientPort}`);
});

test('a reset while the backend is still answering is a WARN client_reset', async (t) => {
  // A backend that keeps streaming small pieces: nothing ever queues in unhitch, so only
  // the bytes that still arrive after the reset show the client left mid-stream.
  const backend = await startBackend((socket) => {
    socket.on('error', () => {});
    socket.once('data', () => {
      const ticker = setInterval(() => socket.write('tick\n'), 5);
      socket.once('close', () => clearInterval(ticker));
    });
  });
  t.after(() => closeBackend(backend));
  const { proxy, sample, warnings } = await harness(t, backend.port);

  const { raw, tls } = await clientOver(proxy.port);
  tls.write('go');
  await once(tls, 'data');
  raw.resetAndDestroy();
  await waitFor(() => proxy.proxy.activeConnections === 0, 5_000, 'connection gone');
  assert.equal(await sample('unhitch_connection_failures_total{reason="client_reset"}'), 1);
  assert.equal(await sample('unhitch_client_abrupt_ends_total'), 0);
  assert.deepEqual(warnings(), ['connection failed client_reset']);
});

/**
 * Does this runtime report a peer's RST that follows data as an error? Node 24 does
 * (ECONNRESET on read); Node 22's libuv reports it as a plain EOF, so there a reset before
 * the handshake ends cannot be told from a FIN and is logged like one.
 */
async function runtimeReportsResets(): Promise<boolean> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const accepted = once(server, 'connection') as Promise<[Socket]>;
    const peer = netConnect((server.address() as { port: number }).port, '127.0.0.1');
    peer.on('error', () => {});
    await once(peer, 'connect');
    const [socket] = await accepted;
    const errored = new Promise<boolean>((resolve) => {
      socket.once('error', () => resolve(true));
      socket.once('close', () => resolve(false));
    });
    socket.resume();
    peer.write('x');
    peer.resetAndDestroy();
    return await errored;
  } finally {
    server.close();
  }
}

test('a reset during the handshake is a WARN client_reset; a FIN (health check) is not', async (t) => {
  const backend = await startBackend((socket) => socket.resume());
  t.after(() => closeBackend(backend));
  const { proxy, warnings } = await harness(t, backend.port);

  const raw = netConnect(proxy.port, '127.0.0.1');
  raw.on('error', () => {});
  await once(raw, 'connect');
  // The first bytes of a ClientHello, then RST.
  raw.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]));
  await waitFor(() => proxy.proxy.activeConnections === 1, 5_000, 'accepted');
  raw.resetAndDestroy();
  await waitFor(() => proxy.log.withReason('client_reset').length === 1, 5_000, 'the reset');
  const resetWarnings = (await runtimeReportsResets()) ? ['handshake failed client_reset'] : [];
  assert.deepEqual(warnings(), resetWarnings);

  // A FIN before any byte (a TCP health check) is no warning.
  const probe = netConnect(proxy.port, '127.0.0.1');
  probe.on('error', () => {});
  await once(probe, 'connect');
  probe.end();
  await waitFor(() => proxy.log.withReason('client_reset').length === 2, 5_000, 'the probe');
  assert.deepEqual(warnings(), resetWarnings);
});
