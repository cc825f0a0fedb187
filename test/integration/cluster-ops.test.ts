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
import type { TLSSocket } from 'node:tls';
import { eventually } from '../kit/eventually.js';
import { makeCertificate } from '../kit/pki.js';
import { freePort } from '../kit/ports.js';
import { closeBackend, connectClient, startBackend, waitFor } from '../kit/proxy-fixture.js';
import { startUnhitch, type UnhitchLogLine } from '../kit/unhitch-process.js';

const cert = makeCertificate('cluster-ops', ['localhost']);
const isReady = (line: UnhitchLogLine) => line.msg === 'worker ready';

function args(frontendPort: number, backendPort: number, extra: string[]): string[] {
  return [
    `--frontend=[127.0.0.1]:${frontendPort}`,
    `--backend=[127.0.0.1]:${backendPort}`,
    '--log-level=debug',
    ...extra,
    cert.combinedPath,
  ];
}

test('pidfile holds the primary PID while running and is removed on exit', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-pid-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const backend = await startBackend((socket) => socket.pipe(socket));
  t.after(() => closeBackend(backend));
  const pidfile = join(dir, 'unhitch.pid');
  const unhitch = startUnhitch(
    args(await freePort(), backend.port, ['--workers=1', `--pidfile=${pidfile}`]),
  );
  t.after(() => unhitch.kill('SIGKILL'));
  await unhitch.waitForLogs(isReady, 1);
  assert.equal(readFileSync(pidfile, 'utf8'), `${unhitch.child.pid}\n`);
  unhitch.kill('SIGTERM');
  assert.equal(await unhitch.exited(), 0);
  assert.equal(existsSync(pidfile), false);
});

test('ticket key rotation reaches every worker at once: new tickets resume on any worker', async (t) => {
  const backend = await startBackend((socket) => socket.pipe(socket));
  t.after(() => closeBackend(backend));
  const port = await freePort();
  const unhitch = startUnhitch(args(port, backend.port, ['--workers=2', '--ticket-rotation=2']));
  t.after(() => unhitch.kill('SIGKILL'));
  await unhitch.waitForLogs(isReady, 2);
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
  assert.equal(unhitch.lines.filter(isReady).length, 0);
});

test('a second SIGTERM during a drain exits at once', async (t) => {
  const backend = await startBackend((socket) => socket.pipe(socket));
  t.after(() => closeBackend(backend));
  const port = await freePort();
  const unhitch = startUnhitch(args(port, backend.port, ['--workers=1', '--drain-timeout=60']));
  t.after(() => unhitch.kill('SIGKILL'));
  await unhitch.waitForLogs(isReady, 1);
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
  const secondAt = Date.now();
  unhitch.kill('SIGTERM');
  await unhitch.exited();
  assert.ok(Date.now() - secondAt < 3_000, 'exited promptly after the second signal');
  assert.equal(unhitch.workerPids().length, 0);
});

test('a stop signal while workers are still starting is a clean stop: exit 0, no worker left', async (t) => {
  const backend = await startBackend((socket) => socket.pipe(socket));
  t.after(() => closeBackend(backend));
  // Workers are forked right after 'starting' is logged; the delays land the signal
  // before, during and after their hello, start and listen (a schedule, not a wait).
  for (const delayMs of [0, 150, 300, 450, 600]) {
    const unhitch = startUnhitch(args(await freePort(), backend.port, ['--workers=2']));
    t.after(() => unhitch.kill('SIGKILL'));
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
    for (const pid of workers)
      assert.equal(existsSync(`/proc/${pid}`), false, `worker ${pid} outlived the primary`);
  }
});
