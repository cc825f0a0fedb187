/**
 * The primary's listening sockets (ListenSockets), with child processes in the workers'
 * role: one SO_REUSEPORT socket per slot on one port; a socket whose only listening
 * copy closes keeps its queued clients while the primary holds its copy; and why it must
 * hold one: when the last copy of a listening socket closes, the kernel resets every
 * client queued in it.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { type AddressInfo, createServer, connect as netConnect, type Socket } from 'node:net';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ListenSockets } from '../../src/cluster/listen-sockets.js';
import type { TcpAddress } from '../../src/config/model.js';
import type { ListenHandle } from '../../src/net/listen-socket.js';

const CHILD = fileURLToPath(new URL('../fixtures/listen-child.js', import.meta.url));
const LOOPBACK: TcpAddress = { kind: 'tcp', host: '127.0.0.1', port: 0 };

function portOf(handle: ListenHandle): number {
  const out: { port?: number } = {};
  handle.getsockname(out);
  return out.port ?? 0;
}

async function startChild(t: { after(fn: () => void): void }): Promise<ChildProcess> {
  const child = fork(CHILD, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  t.after(() => child.kill('SIGKILL'));
  await reply(child, 'ready');
  return child;
}

function reply(child: ChildProcess, type: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: { type?: string }): void => {
      if (message.type !== type) return;
      child.off('message', onMessage);
      child.off('exit', onExit);
      resolve();
    };
    const onExit = (): void => reject(new Error(`child exited before '${type}'`));
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

async function order(child: ChildProcess, type: string, answer: string, handle?: ListenHandle) {
  const answered = reply(child, answer);
  child.send({ type }, handle as never);
  await answered;
}

/** A client whose TCP handshake the kernel completed (queued or accepted). */
async function connected(port: number): Promise<Socket> {
  const socket = netConnect({ host: '127.0.0.1', port });
  await once(socket, 'connect');
  return socket;
}

/** What a connected client ends with: the server's "x", or the error code. */
function outcome(socket: Socket): Promise<string> {
  return new Promise((resolve) => {
    let data = '';
    socket.on('data', (chunk: Buffer) => {
      data += chunk.toString();
    });
    socket.once('end', () => resolve(data));
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'));
  });
}

test('one SO_REUSEPORT socket per slot, all on the port the first one was given', async (t) => {
  const sockets = new ListenSockets();
  t.after(() => sockets.closeAll());
  const first = await sockets.socketFor(LOOPBACK, 0);
  const second = await sockets.socketFor(LOOPBACK, 1);
  assert.notEqual(first, second);
  assert.ok(portOf(first) > 0);
  assert.equal(portOf(second), portOf(first));
  assert.equal(await sockets.socketFor(LOOPBACK, 0), first, 'a slot keeps its socket');
  assert.equal(sockets.size, 2);

  // Both serve: the kernel spreads clients over the two listening sockets.
  const [a, b] = [await startChild(t), await startChild(t)];
  await order(a, 'listen', 'listening', first);
  await order(b, 'listen', 'listening', second);
  const port = portOf(first);
  const results = await Promise.all(
    Array.from({ length: 20 }, async () => outcome(await connected(port))),
  );
  assert.deepEqual(new Set(results), new Set(['x']));

  sockets.retainOnly([LOOPBACK], 1);
  assert.equal(sockets.size, 1, 'slot 1 closed when the worker count shrinks');
  sockets.retainOnly([], 0);
  assert.equal(sockets.size, 0);
});

test('a worker closing its copy leaves the socket queueing: clients wait, then are served', async (t) => {
  const sockets = new ListenSockets();
  t.after(() => sockets.closeAll());
  const handle = await sockets.socketFor(LOOPBACK, 0);
  const port = portOf(handle);
  const worker = await startChild(t);
  await order(worker, 'listen', 'listening', handle);
  await order(worker, 'close', 'closed');

  // Nobody accepts now, yet the kernel completes each TCP handshake: no refusal.
  const waiting = await Promise.all(Array.from({ length: 5 }, () => connected(port)));
  const results = waiting.map(outcome);
  // The same worker (or its successor) gets a fresh copy and serves the queue.
  await order(worker, 'listen', 'listening', handle);
  assert.deepEqual(await Promise.all(results), ['x', 'x', 'x', 'x', 'x']);
});

test('why the primary holds a copy: closing the last copy resets every queued client', async (t) => {
  const sockets = new ListenSockets();
  const handle = await sockets.socketFor(LOOPBACK, 0);
  const port = portOf(handle);
  const worker = await startChild(t);
  await order(worker, 'listen', 'listening', handle);
  sockets.closeAll(); // the worker's copy is now the only one
  await order(worker, 'freeze', 'frozen');

  const waiting = await Promise.all(Array.from({ length: 5 }, () => connected(port)));
  const results = waiting.map(outcome);
  worker.kill('SIGKILL');
  assert.deepEqual(await Promise.all(results), Array(5).fill('ECONNRESET'));
});

test('a port another socket holds: UNHITCH_LISTEN EADDRINUSE at bind, never a random port', async (t) => {
  // libuv reports EADDRINUSE only at listen(2); listen on the unbound socket would pick
  // an ephemeral port. A plain (non-reuseport) listener makes the port taken.
  const holder = createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  t.after(() => holder.close());
  const port = (holder.address() as AddressInfo).port;
  const sockets = new ListenSockets();
  t.after(() => sockets.closeAll());
  await assert.rejects(sockets.socketFor({ kind: 'tcp', host: '127.0.0.1', port }, 0), {
    code: 'UNHITCH_LISTEN',
    errno: 'EADDRINUSE',
  });
  assert.equal(sockets.size, 0);
});
