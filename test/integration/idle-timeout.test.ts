/**
 * idle-timeout: a spliced connection that carries no byte either way for that long is
 * closed like a backend close (close_notify + FIN to the client, FIN to the backend, no
 * reset), logged and counted as idle_timeout; a byte in either direction keeps it open.
 * Never closed sooner than the timeout; at most a quarter timeout later (one sweep).
 */
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ConnectionOptions, TLSSocket } from 'node:tls';
import { type ConnectionFailureReason, NOOP_OBSERVER } from '../../src/proxy/events.js';
import {
  closeBackend,
  connectClient,
  startBackend,
  startProxy,
  waitFor,
} from '../kit/proxy-fixture.js';

const IDLE_MS = 1_000;
/** Bounds every wait here: far above the timeout, so only a missing timeout fails them. */
const WAIT_MS = 10_000;

function from(address: string): ConnectionOptions {
  return { localAddress: address } as ConnectionOptions;
}

interface Ending {
  /** 'end': a FIN (clean); 'error': a reset or other error. */
  readonly how: 'end' | 'error';
  /** performance.now() when it came. */
  readonly at: number;
}

/** How `socket` ends: its FIN, or an error; rejects after WAIT_MS. */
function ending(socket: Socket): Promise<Ending> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`still open after ${WAIT_MS} ms`)), WAIT_MS);
    const done = (how: Ending['how']) => () => {
      clearTimeout(timer);
      resolve({ how, at: performance.now() });
    };
    socket.once('end', done('end'));
    socket.once('error', done('error'));
  });
}

/** An echo backend that hands each of its sockets to the test. */
async function echoBackend() {
  const sockets: Socket[] = [];
  const backend = await startBackend((socket) => {
    sockets.push(socket);
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => socket.write(chunk));
  });
  return { ...backend, accepted: sockets };
}

async function echo(client: TLSSocket, text: string): Promise<void> {
  let seen = '';
  await new Promise<void>((resolve) => {
    const onData = (chunk: Buffer): void => {
      seen += chunk.toString('latin1');
      if (seen.length < text.length) return;
      client.off('data', onData);
      resolve();
    };
    client.on('data', onData);
    client.write(text);
  });
  assert.equal(seen, text);
}

test('idle-timeout: a quiet connection is closed cleanly on both sides, logged and counted', {
  timeout: 30_000,
}, async (t) => {
  const backend = await echoBackend();
  t.after(() => closeBackend(backend));
  const failures: ConnectionFailureReason[] = [];
  const proxy = await startProxy(backend.port, { idleTimeoutMs: IDLE_MS }, undefined, {
    ...NOOP_OBSERVER,
    connectionFailed: (reason) => failures.push(reason),
  });
  t.after(() => proxy.close());

  const client = await connectClient(proxy.port, from('127.0.0.2'));
  client.on('error', () => {});
  const clientEnd = ending(client);
  await echo(client, 'hello');
  const lastByte = performance.now();
  const backendSocket = backend.accepted[0];
  assert.ok(backendSocket);
  const backendEnd = ending(backendSocket);

  const [atClient, atBackend] = await Promise.all([clientEnd, backendEnd]);
  assert.equal(atClient.how, 'end', 'the client got a FIN, not a reset');
  assert.equal(atBackend.how, 'end', 'the backend got a FIN, not a reset');
  const idleMs = atClient.at - lastByte;
  // A timer may fire a little early against performance.now(); a sweep never closes a
  // connection that was active within the last timeout.
  assert.ok(idleMs >= IDLE_MS - 20, `closed after ${Math.round(idleMs)} ms of quiet`);

  await waitFor(() => failures.includes('idle_timeout'), WAIT_MS, 'the counter');
  const [line] = proxy.log.withReason('idle_timeout');
  assert.ok(line, 'a log line with reason idle_timeout');
  assert.equal(line.level, 30, 'info');
  assert.match(String(line.client), /^127\.0\.0\.2:/);
  assert.equal((line.err as { code?: string }).code, 'UNHITCH_IDLE_TIMEOUT');
  await waitFor(() => proxy.proxy.activeConnections === 0, WAIT_MS, 'connection gone');
});

test('idle-timeout: a byte either way keeps a connection open; silence then closes it', {
  timeout: 30_000,
}, async (t) => {
  const backend = await echoBackend();
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port, { idleTimeoutMs: IDLE_MS });
  t.after(() => proxy.close());

  // One connection where only the client talks, one where only the backend talks: both
  // carry a byte every 300 ms for three timeouts.
  const talker = await connectClient(proxy.port, from('127.0.0.3'));
  const listener = await connectClient(proxy.port, from('127.0.0.4'));
  await waitFor(() => backend.accepted.length === 2, WAIT_MS, 'two backend connections');
  const [talkerBackend, listenerBackend] = backend.accepted as [Socket, Socket];
  // Only the listener's backend talks: the talker's backend must not echo.
  talkerBackend.removeAllListeners('data');
  talkerBackend.resume();
  listener.resume();
  const talkerEnd = ending(talker);
  const listenerEnd = ending(listener);
  for (let tick = 0; tick < (3 * IDLE_MS) / 300; tick++) {
    talker.write('.');
    listenerBackend.write('.');
    await sleep(300);
  }
  assert.ok(!talker.destroyed && !talker.readableEnded, 'client → backend bytes kept it open');
  assert.ok(!listener.destroyed && !listener.readableEnded, 'backend → client bytes kept it open');
  assert.deepEqual(proxy.log.withReason('idle_timeout'), []);

  // Now both fall silent: both are closed.
  const [a, b] = await Promise.all([talkerEnd, listenerEnd]);
  assert.equal(a.how, 'end');
  assert.equal(b.how, 'end');
  await waitFor(
    () => proxy.log.withReason('idle_timeout').length === 2,
    WAIT_MS,
    'two idle_timeout lines',
  );
});

test('idle-timeout off (the default): a quiet connection stays open', {
  timeout: 30_000,
}, async (t) => {
  const backend = await echoBackend();
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port);
  t.after(() => proxy.close());
  const client = await connectClient(proxy.port, from('127.0.0.5'));
  await echo(client, 'x');
  await sleep(IDLE_MS * 2);
  assert.ok(!client.destroyed && !client.readableEnded);
  client.destroy();
});

test('idle-timeout: a client that reads nothing while bytes wait for it is cut too (reset: its stream is incomplete)', {
  timeout: 30_000,
}, async (t) => {
  const backend = await echoBackend();
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port, { idleTimeoutMs: IDLE_MS });
  t.after(() => proxy.close());
  const client = await connectClient(proxy.port, from('127.0.0.6'));
  client.on('error', () => {});
  t.after(() => client.destroy());
  client.pause();
  await waitFor(() => backend.accepted.length === 1, WAIT_MS, 'the backend connection');
  // More than every buffer on the way holds: the proxy stops reading the backend, and
  // then nothing moves either way.
  backend.accepted[0]?.write(Buffer.alloc(32 * 1024 * 1024));
  await waitFor(
    () => proxy.log.withReason('idle_timeout').length === 1,
    WAIT_MS,
    'idle_timeout line',
  );
  await waitFor(() => proxy.proxy.activeConnections === 0, WAIT_MS, 'the pair gone');
});
