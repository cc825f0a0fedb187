/**
 * The data plane over real loopback sockets: bytes, half-close, backend faults,
 * handshake timeouts. The proxy runs in-process; clients and backends are real peers.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { startBlackHole } from '../helpers/black-hole.js';
import { type TcpSocketOptions, tcpSocketOptions } from '../helpers/tcp-options.js';
import { announceOnce, startTracker } from '../helpers/webtorrent.js';
import { localhostCertificate } from '../kit/pki.js';
import { freePort } from '../kit/ports.js';
import {
  closeBackend,
  connectClient,
  readAll,
  startBackend,
  startProxy,
  waitFor,
} from '../kit/proxy-fixture.js';
import { startSingleWorker } from '../kit/unhitch-process.js';

const MiB = 1024 * 1024;

/** Writes `total` random bytes with backpressure, then ends; resolves with their SHA-256. */
async function sendRandom(socket: Socket, total: number): Promise<string> {
  const hash = createHash('sha256');
  let sent = 0;
  while (sent < total) {
    const chunk = randomBytes(Math.min(64 * 1024, total - sent));
    hash.update(chunk);
    sent += chunk.length;
    if (!socket.write(chunk)) await once(socket, 'drain');
  }
  socket.end();
  return hash.digest('hex');
}

function sha256Of(socket: Socket): Promise<{ digest: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let bytes = 0;
    socket.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
    });
    socket.once('end', () => resolve({ digest: hash.digest('hex'), bytes }));
    socket.once('error', reject);
  });
}

test('a WebTorrent announce over wss reaches bittorrent-tracker and its answer comes back', async (t) => {
  const { port: trackerPort } = await startTracker(t, { http: false, ws: true });
  const proxy = await startProxy(trackerPort);
  t.after(() => proxy.close());

  const response = await announceOnce(`wss://127.0.0.1:${proxy.port}`);
  assert.equal(response.action, 'announce');
  assert.equal(typeof response.interval, 'number');
  assert.equal(response['failure reason'], undefined);
});

test('64 MiB each way at once arrive intact (SHA-256), under backpressure', {
  timeout: 120_000,
}, async (t) => {
  const total = 64 * MiB;
  let backendResult: Promise<{ digest: string; bytes: number }> | undefined;
  let backendSent: Promise<string> | undefined;
  const backend = await startBackend((socket) => {
    backendResult = sha256Of(socket);
    backendSent = sendRandom(socket, total);
  });
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port);
  t.after(() => proxy.close());

  const client = await connectClient(proxy.port);
  const clientResult = sha256Of(client);
  const clientSent = await sendRandom(client, total);
  const received = await clientResult;
  await waitFor(() => backendResult !== undefined, 5_000, 'backend connection');
  const atBackend = await (backendResult as Promise<{ digest: string; bytes: number }>);

  assert.equal(atBackend.bytes, total);
  assert.equal(atBackend.digest, clientSent, 'client → backend bytes differ');
  assert.equal(received.bytes, total);
  assert.equal(
    received.digest,
    await (backendSent as Promise<string>),
    'backend → client bytes differ',
  );
});

test('half-close from the client: the backend sees EOF and can still answer', async (t) => {
  const backend = await startBackend((socket) => {
    void readAll(socket).then((request) => {
      // Only after the client's EOF: the reply proves the other direction stayed open.
      socket.end(Buffer.concat([Buffer.from('got:'), request]));
    });
  });
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port);
  t.after(() => proxy.close());

  const client = await connectClient(proxy.port);
  const reply = readAll(client);
  client.end('hello');
  assert.equal((await reply).toString(), 'got:hello');
});

test('a FIN sent before the backend has connected still reaches it; nothing lingers', {
  timeout: 10_000,
}, async (t) => {
  // The client ends in the same tick its handshake completes: the proxy sees EOF while its
  // backend connect is still in flight (this left the pair open before the fix).
  const backend = await startBackend((socket) => {
    void readAll(socket).then((request) => socket.end(`eof after ${request.length} bytes`));
  });
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port);
  t.after(() => proxy.close());

  for (let i = 0; i < 5; i++) {
    const client = await connectClient(proxy.port);
    const reply = readAll(client);
    client.end();
    assert.equal((await reply).toString(), 'eof after 0 bytes');
  }
  await waitFor(() => proxy.proxy.activeConnections === 0, 3_000, 'every pair closed');
  await waitFor(() => backend.sockets.size === 0, 3_000, 'every backend socket closed');
});

test('half-close from the backend: the client sees EOF and can still send', async (t) => {
  let received: Promise<Buffer> | undefined;
  const backend = await startBackend((socket) => {
    received = readAll(socket);
    socket.end('bye');
  });
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port);
  t.after(() => proxy.close());

  const client = await connectClient(proxy.port);
  const fromBackend = await readAll(client);
  assert.equal(fromBackend.toString(), 'bye');
  client.end('still talking');
  await waitFor(() => received !== undefined);
  assert.equal((await (received as Promise<Buffer>)).toString(), 'still talking');
});

test('backend down: the client is closed, a log line names the reason, the proxy keeps serving', async (t) => {
  const deadPort = await freePort();
  const proxy = await startProxy(deadPort);
  t.after(() => proxy.close());

  for (let attempt = 0; attempt < 3; attempt++) {
    const client = await connectClient(proxy.port);
    const data = await readAll(client); // resolves on a clean end, rejects on reset
    assert.equal(data.length, 0);
  }
  await waitFor(
    () => proxy.log.withReason('backend_refused').length === 3,
    2_000,
    'three log lines',
  );
  assert.equal(proxy.proxy.activeConnections, 0);
  // Keeps serving: once the backend is up on that port, the same proxy relays to it.
  const revived = createServer((socket) => socket.pipe(socket));
  revived.listen(deadPort, '127.0.0.1');
  await once(revived, 'listening');
  t.after(() => revived.close());
  const client = await connectClient(proxy.port);
  const echo = readAll(client);
  client.end('served after the failures');
  assert.equal((await echo).toString(), 'served after the failures');
});

test('backend black-holed (accept queue full): backend-connect-timeout closes the client', async (t) => {
  const holder = await startBlackHole();
  t.after(() => holder.close());
  const port = holder.port;

  const proxy = await startProxy(port, { backendConnectTimeoutMs: 300 });
  t.after(() => proxy.close());
  const started = Date.now();
  const client = await connectClient(proxy.port);
  await readAll(client);
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= 250 && elapsed < 3_000, `closed after ${elapsed} ms`);
  await waitFor(
    () => proxy.log.withReason('backend_connect_timeout').length === 1,
    2_000,
    'timeout log line',
  );
});

test('a client that never finishes its handshake is cut at ssl-handshake-timeout', async (t) => {
  const backend = await startBackend(() => {});
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port, { sslHandshakeTimeoutMs: 300 });
  t.after(() => proxy.close());

  const started = Date.now();
  const idle = netConnect(proxy.port, '127.0.0.1');
  idle.on('error', () => {});
  idle.resume();
  await once(idle, 'close');
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= 250 && elapsed < 3_000, `closed after ${elapsed} ms`);
  await waitFor(
    () => proxy.log.withReason('handshake_timeout').length === 1,
    2_000,
    'timeout log line',
  );
  assert.equal(backend.sockets.size, 0, 'no backend connection for an unfinished handshake');
  assert.equal(proxy.proxy.activeConnections, 0, 'a timed-out handshake leaves nothing behind');
});

test('plaintext HTTP on the TLS port is closed with reason not_tls', async (t) => {
  const backend = await startBackend(() => {});
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port);
  t.after(() => proxy.close());

  const plain = netConnect(proxy.port, '127.0.0.1');
  plain.on('error', () => {});
  plain.end('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  plain.resume();
  await once(plain, 'close');
  await waitFor(() => proxy.log.withReason('not_tls').length === 1, 2_000, 'not_tls log line');
  assert.equal(proxy.proxy.activeConnections, 0, 'a failed handshake leaves nothing behind');
});

test('unix socket backend: bytes flow both ways', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-unix-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'backend.sock');
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    void readAll(socket).then((data) => socket.end(Buffer.concat([Buffer.from('unix:'), data])));
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  t.after(() => server.close());
  const proxy = await startProxy(0, { backend: { kind: 'unix', path } });
  t.after(() => proxy.close());

  const client = await connectClient(proxy.port);
  const reply = readAll(client);
  client.end('over a unix socket');
  assert.equal((await reply).toString(), 'unix:over a unix socket');
});

test('backend source addresses: connections leave from each configured local address in turn', async (t) => {
  const seen: string[] = [];
  const backend = await startBackend((socket) => {
    seen.push(socket.remoteAddress ?? '');
    socket.end();
  });
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port, {
    backendSourceAddresses: ['127.0.0.2', '127.0.0.3'],
  });
  t.after(() => proxy.close());

  for (let index = 0; index < 4; index++) {
    const client = await connectClient(proxy.port);
    await readAll(client);
  }
  assert.deepEqual(seen, ['127.0.0.2', '127.0.0.3', '127.0.0.2', '127.0.0.3']);
});

test('drain: idle proxy returns at once; a connection past the grace is closed with reason shutdown', async (t) => {
  const backend = await startBackend((socket) => socket.pipe(socket));
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port);
  t.after(() => proxy.close());

  const client = await connectClient(proxy.port);
  client.on('error', () => {});
  client.write('x');
  await once(client, 'data');
  const ended = once(client, 'end'); // the client is half-open capable: it sees our FIN
  const started = Date.now();
  const result = await proxy.proxy.drain(200);
  assert.equal(result.forcedClosed, 1);
  assert.ok(Date.now() - started >= 190);
  await waitFor(() => proxy.log.withReason('shutdown').length === 1, 2_000, 'shutdown log line');
  await ended;
  assert.equal(proxy.proxy.activeConnections, 0);
  assert.deepEqual(await proxy.proxy.drain(200), { forcedClosed: 0 });
});

test('drain: a connection still handshaking when the drain starts is served to its end', {
  timeout: 10_000,
}, async (t) => {
  const backend = await startBackend((socket) => socket.pipe(socket));
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port);
  t.after(() => proxy.close());

  // Accepted but no ClientHello yet: the drain starts while this one is handshaking.
  const raw = netConnect(proxy.port, '127.0.0.1');
  await once(raw, 'connect');
  await waitFor(() => proxy.proxy.activeConnections === 1, 2_000, 'accepted');
  let drained = false;
  const drain = proxy.proxy.drain(5_000).then((result) => {
    drained = true;
    return result;
  });

  const client = await connectClient(proxy.port, { socket: raw });
  client.write('still served');
  const [echo] = (await once(client, 'data')) as [Buffer];
  assert.equal(echo.toString(), 'still served');
  assert.equal(drained, false, 'the drain waits for the connection');
  client.end();
  assert.deepEqual(await drain, { forcedClosed: 0 });
});

/** A one-worker unhitch (`args`) in front of an echo backend, and a client whose byte came back. */
async function workerWithClient(t: TestContext, args: readonly string[]) {
  const backend = await startBackend((socket) => socket.pipe(socket));
  t.after(() => closeBackend(backend));
  const worker = await startSingleWorker(backend.port, localhostCertificate().combinedPath, args);
  t.after(() => worker.unhitch.kill('SIGKILL'));
  const client = await connectClient(worker.port);
  t.after(() => client.destroy());
  // An echoed byte proves the backend leg is up.
  client.write('x');
  await once(client, 'data');
  return { backend, worker, client };
}

/** The worker's live TCP sockets, or undefined (and `t` skipped) without ptrace rights. */
function liveSockets(t: TestContext, workerPid: number): TcpSocketOptions[] | undefined {
  try {
    return tcpSocketOptions(workerPid);
  } catch (error) {
    if (!/EPERM|Operation not permitted/.test(String((error as Error).message))) throw error;
    t.skip('no ptrace rights over the worker (run as root, as CI does)');
    return undefined;
  }
}

test('TCP_NODELAY and the configured keepalive from accept on (mid-handshake) and on the spliced client leg; TCP_NODELAY alone towards a loopback backend (live sockets)', async (t) => {
  const { backend, worker, client } = await workerWithClient(t, ['--keepalive=77']);
  // A client that has not begun its handshake: its socket must already have the options.
  const silent = netConnect(worker.port, '127.0.0.1');
  t.after(() => silent.destroy());
  await once(silent, 'connect');

  let sockets: TcpSocketOptions[] = [];
  let handshaking: TcpSocketOptions | undefined;
  // The worker accepts the silent connection on its next loop turn: poll briefly.
  for (let attempt = 0; attempt < 50 && handshaking === undefined; attempt++) {
    if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 20));
    const found = liveSockets(t, worker.workerPid);
    if (found === undefined) return;
    sockets = found;
    handshaking = sockets.find(
      (s) => s.localPort === worker.port && s.remotePort === silent.localPort,
    );
  }
  const clientLeg = sockets.find(
    (s) => s.localPort === worker.port && s.remotePort === client.localPort,
  );
  const backendLeg = sockets.find((s) => s.remotePort === backend.port);
  assert.ok(handshaking, `handshaking socket among ${JSON.stringify(sockets)}`);
  assert.ok(clientLeg, `client leg among ${JSON.stringify(sockets)}`);
  assert.ok(backendLeg, `backend leg among ${JSON.stringify(sockets)}`);
  // The client sockets inherit both from the listening socket (set once, not per accept).
  for (const [leg, options] of [
    ['handshaking client', handshaking],
    ['client', clientLeg],
  ] as const) {
    assert.equal(options.noDelay, true, `${leg} leg has TCP_NODELAY`);
    assert.equal(options.keepAlive, true, `${leg} leg has SO_KEEPALIVE`);
    assert.equal(options.keepIdleSec, 77, `${leg} leg has TCP_KEEPIDLE = keepalive`);
  }
  // A loopback backend: keepalive could find nothing out there (as Hitch, none at all).
  assert.equal(backendLeg.noDelay, true, 'backend leg has TCP_NODELAY');
  assert.equal(backendLeg.keepAlive, false, 'no SO_KEEPALIVE towards a loopback backend');
});

test('tcp-keepalive = 0: accepted sockets have TCP_NODELAY and no keepalive (the listening socket says so)', async (t) => {
  const { worker, client } = await workerWithClient(t, ['--keepalive=0']);
  const sockets = liveSockets(t, worker.workerPid);
  if (sockets === undefined) return;
  const clientLeg = sockets.find(
    (s) => s.localPort === worker.port && s.remotePort === client.localPort,
  );
  assert.ok(clientLeg, `client leg among ${JSON.stringify(sockets)}`);
  assert.equal(clientLeg.noDelay, true, 'client leg has TCP_NODELAY');
  assert.equal(clientLeg.keepAlive, false, 'client leg has no SO_KEEPALIVE');
});
