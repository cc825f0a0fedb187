/**
 * What one connection costs the worker in system calls (issue 24): counted with strace
 * over a few whole connections (handshake, one byte each way, close), so a change that
 * brings back a per-connection setsockopt, getpeername or getsockname shows as a count.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { localhostCertificate } from '../kit/pki.js';
import { closeBackend, connectClient, startBackend } from '../kit/proxy-fixture.js';
import { countSyscalls, straceAvailable } from '../kit/strace.js';
import { startSingleWorker } from '../kit/unhitch-process.js';

const CONNECTIONS = 20;

/** One whole connection: handshake, a byte there and back, close_notify + FIN, closed. */
async function oneConnection(port: number): Promise<void> {
  const client: TLSSocket = await connectClient(port);
  client.write('x');
  await once(client, 'data');
  const closed = once(client, 'close');
  client.end();
  await closed;
}

async function connections(port: number, count: number): Promise<void> {
  for (let index = 0; index < count; index++) await oneConnection(port);
}

function skipReason(): string | undefined {
  if (!straceAvailable()) return 'strace is not installed';
  if (process.getuid?.() !== 0) return 'strace needs ptrace rights over the worker (root, as CI)';
  return undefined;
}

test('per connection the worker sets one socket option (the backend TCP_NODELAY): keepalive and the client TCP_NODELAY come from the listening socket', {
  skip: skipReason(),
}, async (t) => {
  const backend = await startBackend((socket) => socket.pipe(socket));
  t.after(() => closeBackend(backend));
  const worker = await startSingleWorker(backend.port, localhostCertificate().combinedPath, [
    '--keepalive=77',
  ]);
  t.after(() => worker.unhitch.kill('SIGKILL'));
  await connections(worker.port, 3); // warm: lazily loaded code, first ticket

  const { counts } = await countSyscalls([worker.workerPid], () =>
    connections(worker.port, CONNECTIONS),
  );
  assert.equal(counts.get('accept4')?.calls, CONNECTIONS, 'every connection was counted');
  // Before issue 24: 10 per connection (TCP_NODELAY and four keepalive options on each side).
  assert.equal(counts.get('setsockopt')?.calls ?? 0, CONNECTIONS, 'one setsockopt per connection');
});
