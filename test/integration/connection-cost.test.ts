/**
 * What one connection costs the worker in system calls (issue 24): counted with strace
 * over a few whole connections (handshake, one byte each way, close), so a change that
 * brings back a per-connection setsockopt, getpeername or getsockname shows as a count.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { type TestContext, test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { localhostCertificate } from '../kit/pki.js';
import { freePort, waitForPort } from '../kit/ports.js';
import { closeBackend, connectClient, startBackend } from '../kit/proxy-fixture.js';
import { countSyscalls, straceAvailable } from '../kit/strace.js';
import { startUnhitch, type UnhitchProcess } from '../kit/unhitch-process.js';

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

/** The worker of a one-worker unhitch: found by its command line, as --quiet logs no 'worker ready'. */
function workerOf(unhitch: UnhitchProcess): number | undefined {
  return unhitch
    .workerPids()
    .find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('cluster/worker.js'));
}

/** Syscalls of a one-worker unhitch (started with `args`) over CONNECTIONS connections. */
async function countPerRun(t: TestContext, args: readonly string[]) {
  const backend = await startBackend((socket) => socket.pipe(socket));
  t.after(() => closeBackend(backend));
  const port = await freePort();
  const unhitch = startUnhitch([
    `--frontend=[127.0.0.1]:${port}`,
    `--backend=[127.0.0.1]:${backend.port}`,
    '--workers=1',
    ...args,
    localhostCertificate().combinedPath,
  ]);
  t.after(() => unhitch.kill('SIGKILL'));
  await waitForPort(port, 15_000);
  await connections(port, 3); // warm: lazily loaded code, first ticket
  const workerPid = workerOf(unhitch);
  assert.ok(workerPid, 'the worker process');
  const { counts } = await countSyscalls([workerPid], () => connections(port, CONNECTIONS));
  assert.equal(counts.get('accept4')?.calls, CONNECTIONS, 'every connection was counted');
  return (name: string): number => counts.get(name)?.calls ?? 0;
}

test('per connection the worker sets one socket option (the backend TCP_NODELAY): keepalive and the client TCP_NODELAY come from the listening socket', {
  skip: skipReason(),
}, async (t) => {
  const calls = await countPerRun(t, ['--keepalive=77']);
  // Before issue 24: 10 per connection (TCP_NODELAY and four keepalive options on each side).
  assert.equal(calls('setsockopt'), CONNECTIONS, 'one setsockopt per connection');
});

test('addresses are read only when needed: the client address at accept while failure lines are logged (warn and below), nothing under --quiet; our own address never without a PROXY header', {
  skip: skipReason(),
}, async (t) => {
  const logged = await countPerRun(t, []);
  assert.equal(logged('getpeername'), CONNECTIONS, 'client address read once per connection');
  assert.equal(logged('getsockname'), 0, 'no getsockname without a PROXY header');
  const quiet = await countPerRun(t, ['--quiet']);
  assert.equal(quiet('getpeername'), 0, 'nothing will name the client: no getpeername');
  assert.equal(quiet('getsockname'), 0);
});
