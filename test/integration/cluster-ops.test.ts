/**
 * Operational details of the clustered binary: pidfile, ticket key rotation reaching
 * every worker at once, and a refused start.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TLSSocket } from 'node:tls';
import { isWorkerReady, processEnded, startCluster } from '../helpers/cluster.js';
import { eventually } from '../kit/eventually.js';
import { makeCertificate } from '../kit/pki.js';
import { freePort } from '../kit/ports.js';
import { connectClient, waitFor } from '../kit/proxy-fixture.js';
import { startUnhitch } from '../kit/unhitch-process.js';

const cert = makeCertificate('cluster-ops', ['localhost']);

test('pidfile holds the primary PID while running and is removed on exit', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-pid-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const pidfile = join(dir, 'unhitch.pid');
  const { unhitch } = await startCluster(t, { workers: 1, args: [`--pidfile=${pidfile}`] });
  assert.equal(readFileSync(pidfile, 'utf8'), `${unhitch.child.pid}\n`);
  unhitch.kill('SIGTERM');
  assert.equal(await unhitch.exited(), 0);
  assert.equal(existsSync(pidfile), false);
});

test('ticket key rotation reaches every worker at once: new tickets resume on any worker', async (t) => {
  const { unhitch, port } = await startCluster(t, {
    workers: 2,
    args: ['--ticket-rotation=2'],
  });
  const rotations = () =>
    unhitch.lines.filter((line) => line.msg === 'session ticket key rotated').length;
  const handshakeLog = (client: TLSSocket) =>
    unhitch.waitForLog(
      (line) =>
        line.msg === 'handshake completed' && line.client === `127.0.0.1:${client.localPort}`,
    );

  let resumedOnOther = false;
  for (let round = 0; round < 5 && !resumedOnOther; round++) {
    // Start right after a rotation so the ticket's key stays current for ~2 s.
    const seen = rotations();
    await waitFor(() => rotations() > seen, 5_000, 'a rotation');
    const rotation = rotations();
    const first = await connectClient(port);
    const [session] = (await once(first, 'session')) as [Buffer];
    const issuer = (await handshakeLog(first)).pid;
    first.destroy();
    for (let attempt = 0; attempt < 30 && rotations() === rotation; attempt++) {
      const again = await connectClient(port, { session });
      const line = await handshakeLog(again);
      again.destroy();
      if (rotations() !== rotation) break; // the key moved on mid-attempt: next round
      if (line.pid !== issuer) {
        assert.equal(
          line.resumed,
          true,
          'a ticket from the current key resumes on the other worker',
        );
        resumedOnOther = true;
        break;
      }
    }
  }
  assert.ok(resumedOnOther, 'never reached the other worker between rotations');
  assert.ok(rotations() >= 1);
});

test('a certificate that does not match its key: exit 1 naming the file, nothing served', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-mismatch-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const other = makeCertificate('cluster-ops-other', ['localhost']);
  const config = join(dir, 'hitch.conf');
  writeFileSync(
    config,
    `frontend = "[127.0.0.1]:${await freePort()}"\nbackend = "[127.0.0.1]:9"\n` +
      `pem-file = {\n  cert = "${cert.certPath}"\n  private-key = "${other.keyPath}"\n}\n`,
  );
  const unhitch = startUnhitch([`--config=${config}`]);
  t.after(() => unhitch.kill('SIGKILL'));
  assert.equal(await unhitch.exited(), 1);
  assert.match(unhitch.text(), new RegExp(`${other.keyPath}: private key does not match`));
  assert.equal(unhitch.lines.filter(isWorkerReady).length, 0);
});

test('a second SIGTERM during a drain exits at once', async (t) => {
  const { unhitch, port } = await startCluster(t, { workers: 1, args: ['--drain-timeout=60'] });
  // Recorded now: once the primary is gone its children can no longer be listed.
  const workers = unhitch.workerPids();
  assert.equal(workers.length, 1);
  const client = await connectClient(port);
  client.on('error', () => {});
  t.after(() => client.destroy());

  unhitch.kill('SIGTERM');
  await unhitch.waitForLog((line) => line.msg === 'draining');
  // A round trip after the drain began: the connection is still served, so the drain holds.
  const echoed = once(client, 'data');
  client.write('still here');
  assert.equal(String((await echoed)[0]), 'still here');
  assert.equal(unhitch.child.exitCode, null, 'the open connection holds the drain');
  const primaryExit = once(unhitch.child, 'exit');
  unhitch.kill('SIGTERM');
  // The primary's own exit: exited() would also wait for a worker left holding the pipe.
  // Not waiting out the 60 s drain is the behaviour; 15 s leaves room for a loaded machine.
  const outcome = await Promise.race([
    primaryExit.then(() => 'exited'),
    sleep(15_000, 'still running', { ref: false }),
  ]);
  assert.equal(outcome, 'exited', 'the primary exits promptly after the second signal');
  await eventually(
    () => workers.every(processEnded) || undefined,
    5_000,
    `worker ${workers.join(', ')} ended with the primary, not left draining`,
  );
});

test('a stop signal while workers are still starting is a clean stop: exit 0, no worker left', async (t) => {
  // Workers are forked right after 'starting' is logged; the delays land the signal
  // before, during and after their hello, start and listen (a schedule, not a wait).
  for (const delayMs of [0, 150, 300, 450, 600]) {
    const { unhitch } = await startCluster(t, { args: ['--workers=2'] });
    await unhitch.waitForLog((line) => line.msg === 'starting');
    const signalAt = Date.now() + delayMs;
    const workers = await eventually(
      () => {
        const pids = unhitch.workerPids();
        return pids.length >= 2 ? pids : undefined;
      },
      delayMs + 2_000,
      'both workers forked',
    );
    assert.equal(workers.length, 2, 'both workers forked');
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, signalAt - Date.now())));
    unhitch.kill('SIGTERM');
    const code = await Promise.race([
      unhitch.exited(),
      new Promise((resolve) => setTimeout(() => resolve('timeout'), 10_000).unref()),
    ]);
    const log = unhitch.lines.map((line) => JSON.stringify(line)).join('\n');
    assert.equal(code, 0, `signal ${delayMs} ms after starting:\n${unhitch.text()}${log}`);
    assert.ok(!unhitch.lines.some((line) => line.msg === 'workers failed to start'));
    for (const pid of workers) assert.ok(processEnded(pid), `worker ${pid} outlived the primary`);
  }
});
