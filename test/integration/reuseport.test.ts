/**
 * Per-worker SO_REUSEPORT listening sockets, seen from outside: one LISTEN socket per
 * worker on the frontend port, the kernel spreading clients over them, and reloads under
 * a steady stream of new clients losing none (slot i's socket passes from the old
 * worker i to the new one; nothing queued in it is reset).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type AddressInfo, createServer } from 'node:net';
import { test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { exhaustDescriptors, isWorkerReady, startCluster } from '../helpers/cluster.js';
import { loopbackListenSockets } from '../helpers/proc-net.js';
import { makeCertificate } from '../kit/pki.js';
import { startUnhitch, type UnhitchLogLine } from '../kit/unhitch-process.js';

const cert = makeCertificate('reuseport', ['localhost']);

/** One TLS connection that sends a line and reads the echo; the error code otherwise. */
async function roundTrip(port: number, text: string): Promise<string> {
  const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false });
  try {
    await once(socket, 'secureConnect');
    socket.write(text);
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    return chunk.toString();
  } catch (error) {
    return (error as NodeJS.ErrnoException).code ?? 'error';
  } finally {
    socket.destroy();
  }
}

test('two workers: two SO_REUSEPORT sockets on the port, the kernel spreads clients over both', async (t) => {
  const { unhitch, port } = await startCluster(t, { workers: 2 });
  assert.equal(loopbackListenSockets(port), 2, 'one listening socket per worker');

  const total = 200;
  for (let done = 0; done < total; done += 10) {
    const replies = await Promise.all(
      Array.from({ length: 10 }, (_, index) => roundTrip(port, `c${done + index}`)),
    );
    assert.deepEqual(
      replies,
      Array.from({ length: 10 }, (_, index) => `c${done + index}`),
    );
  }
  const handshakes = await unhitch.waitForLogs(
    (line: UnhitchLogLine) => line.msg === 'handshake completed',
    total,
  );
  const perWorker = new Map<unknown, number>();
  for (const line of handshakes) perWorker.set(line.pid, (perWorker.get(line.pid) ?? 0) + 1);
  const counts = [...perWorker.values()];
  t.diagnostic(`per worker: ${counts.join(' / ')}`);
  assert.equal(counts.length, 2, 'both workers served');
  // Hashing 200 random source ports over two sockets: below 25 % is all but impossible.
  for (const count of counts) assert.ok(count >= total / 4, `a worker served only ${count}`);
});

test('SIGHUP three times under a steady stream of new clients: every client is served', async (t) => {
  const { unhitch, port } = await startCluster(t, { workers: 2 });

  let streaming = true;
  let served = 0;
  const failures: string[] = [];
  // Four lanes of back-to-back clients, bounded in count and (by the reloads) in time.
  const lanes = Array.from({ length: 4 }, async (_, lane) => {
    for (let index = 0; streaming && index < 2_000; index++) {
      const text = `l${lane}-${index}`;
      const reply = await roundTrip(port, text);
      if (reply === text) served += 1;
      else failures.push(reply);
    }
  });
  for (let reload = 1; reload <= 3; reload++) {
    unhitch.kill('SIGHUP');
    await unhitch.waitForLogs((line) => line.msg === 'reloaded', reload, 20_000);
  }
  streaming = false;
  await Promise.all(lanes);
  t.diagnostic(`${served} clients served across 3 reloads`);
  assert.deepEqual(failures, [], 'no client refused or reset');
  assert.ok(served > 0);
  assert.equal(loopbackListenSockets(port), 2, 'still one socket per worker, none leaked');
});

test('a frontend port another process listens on: start fails with UNHITCH_LISTEN EADDRINUSE', async (t) => {
  const holder = createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  t.after(() => holder.close());
  const port = (holder.address() as AddressInfo).port;
  const unhitch = startUnhitch([
    `--frontend=[127.0.0.1]:${port}`,
    '--backend=[127.0.0.1]:9',
    '--workers=1',
    cert.combinedPath,
  ]);
  t.after(() => unhitch.kill('SIGKILL'));
  assert.equal(await unhitch.exited(), 1);
  const failure = unhitch.lines.find((line) => line.code === 'UNHITCH_WORKER_START');
  assert.match(JSON.stringify(failure?.err), /EADDRINUSE/);
  assert.match(JSON.stringify(failure?.err), /UNHITCH_LISTEN/);
});

test('a worker that keeps crashing: its socket closes while the sibling serves, then comes back', async (t) => {
  const { unhitch, port } = await startCluster(t, { workers: 2 });
  const first = unhitch.lines.filter(isWorkerReady);
  const survivor = first[1]?.workerPid as number;
  let victim = first[0]?.workerPid as number;

  // Killed again as soon as it is back: the restart delay doubles each time.
  for (let kill = 1; kill <= 3; kill++) {
    process.kill(victim, 'SIGKILL');
    const readyLines = await unhitch.waitForLogs(isWorkerReady, 2 + kill, 30_000);
    victim = readyLines[1 + kill]?.workerPid as number;
    assert.notEqual(victim, survivor);
  }
  // The fourth time it cannot come back (its forks fail, the primary out of descriptors)
  // until the test lets it: the window in which the slot is down is the test's, not a
  // restart delay a loaded machine could overrun.
  const restoreDescriptors = await exhaustDescriptors(unhitch.child.pid as number);
  t.after(restoreDescriptors);
  process.kill(victim, 'SIGKILL');
  await unhitch.waitForLog(
    (line) => line.msg === 'worker keeps crashing: its listening sockets closed until it is back',
    30_000,
  );
  assert.equal(loopbackListenSockets(port), 1, 'only the sibling socket listens meanwhile');
  const replies = await Promise.all(
    Array.from({ length: 10 }, (_, index) => roundTrip(port, `m${index}`)),
  );
  assert.deepEqual(
    replies,
    Array.from({ length: 10 }, (_, index) => `m${index}`),
    'every client served by the sibling, none left waiting',
  );
  await restoreDescriptors();
  await unhitch.waitForLogs(isWorkerReady, 6, 60_000);
  assert.equal(loopbackListenSockets(port), 2, 'the replacement listens on a new socket');
});
