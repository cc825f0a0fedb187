/**
 * Reload (SIGHUP) edge cases with the real binary: a worker dying while a reload fails,
 * the bound on old generations (reload-drain-timeout), ticket keys reaching draining
 * generations, and SIGTERM shortening an old generation's drain.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { makeCertificate } from '../kit/pki.js';
import { freePort } from '../kit/ports.js';
import { closeBackend, connectClient, startBackend, waitFor } from '../kit/proxy-fixture.js';
import { startUnhitch, type UnhitchLogLine } from '../kit/unhitch-process.js';

const cert = makeCertificate('reload', ['localhost']);
const isReady = (line: UnhitchLogLine) => line.msg === 'worker ready';

async function echo(client: TLSSocket, text: string): Promise<string> {
  client.write(text);
  const [reply] = (await once(client, 'data')) as [Buffer];
  return reply.toString();
}

/** The proxy ended the connection: FIN (the client allows half-open), reset or close. */
function ended(client: TLSSocket): Promise<void> {
  return new Promise((resolve) => {
    for (const event of ['end', 'close', 'error']) client.once(event, () => resolve());
  });
}

interface Setup {
  readonly port: number;
  readonly configPath: string;
  /** hitch.conf text for this frontend and backend, plus `extra` lines. */
  readonly conf: (extra?: string) => string;
}

async function setup(t: { after: (fn: () => void) => void }): Promise<Setup> {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-reload-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const backend = await startBackend((socket) => socket.pipe(socket));
  t.after(() => closeBackend(backend));
  const port = await freePort();
  const configPath = join(dir, 'hitch.conf');
  const conf = (extra = ''): string =>
    `frontend = "[127.0.0.1]:${port}"\nbackend = "[127.0.0.1]:${backend.port}"\n` +
    `workers = 1\nlog-level = "debug"\npem-file = "${cert.combinedPath}"\n${extra}`;
  return { port, configPath, conf };
}

test('a worker that dies while a reload is starting is restarted, and still serves when that reload fails', async (t) => {
  const { port, configPath, conf } = await setup(t);
  writeFileSync(configPath, conf());
  const unhitch = startUnhitch([`--config=${configPath}`]);
  t.after(() => unhitch.kill('SIGKILL'));
  await unhitch.waitForLogs(isReady, 1);
  const [oldWorker] = unhitch.workerPids();
  assert.ok(oldWorker !== undefined);

  // The new generation cannot start (a second frontend on a port another process holds:
  // only listening finds out); it is held stopped so the reload stays in progress while
  // the running worker dies.
  const busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  t.after(() => busy.close());
  const busyPort = (busy.address() as AddressInfo).port;
  writeFileSync(configPath, conf(`frontend = "[127.0.0.1]:${busyPort}"\n`));
  unhitch.kill('SIGHUP');
  let newWorker: number | undefined;
  await waitFor(
    () => {
      newWorker = unhitch.workerPids().find((pid) => pid !== oldWorker);
      return newWorker !== undefined;
    },
    10_000,
    'the new generation forked',
  );
  process.kill(newWorker as number, 'SIGSTOP');
  t.after(() => {
    try {
      process.kill(newWorker as number, 'SIGKILL');
    } catch {
      // Already gone.
    }
  });
  process.kill(oldWorker, 'SIGKILL');
  await unhitch.waitForLog((line) => line.msg === 'worker died; restarting');
  await unhitch.waitForLogs(isReady, 2, 15_000);
  process.kill(newWorker as number, 'SIGKILL');
  await unhitch.waitForLog((line) => line.code === 'UNHITCH_RELOAD_FAILED');

  const client = await connectClient(port);
  t.after(() => client.destroy());
  assert.equal(await echo(client, 'after the failed reload'), 'after the failed reload');
  client.destroy();
  unhitch.kill('SIGTERM');
  assert.equal(await unhitch.exited(), 0);
});

test('reload-drain-timeout: an old generation closes what it still holds after the bound, then exits', async (t) => {
  const { port, configPath, conf } = await setup(t);
  writeFileSync(configPath, conf('reload-drain-timeout = 1\n'));
  const unhitch = startUnhitch([`--config=${configPath}`]);
  t.after(() => unhitch.kill('SIGKILL'));
  await unhitch.waitForLogs(isReady, 1);

  const held = await connectClient(port);
  t.after(() => held.destroy());
  assert.equal(await echo(held, 'old generation'), 'old generation');
  const closed = ended(held);
  unhitch.kill('SIGHUP');
  await unhitch.waitForLog((line) => line.msg === 'reloaded');
  const reloadedAt = Date.now();
  const drained = await unhitch.waitForLog(
    (line) => line.msg === 'old-generation worker drained',
    15_000,
  );
  assert.equal(drained.forcedClosed, 1);
  await closed;
  // Not at once: the connection had its second.
  assert.ok(Date.now() - reloadedAt >= 500, `closed after ${Date.now() - reloadedAt} ms`);
  await unhitch.waitForLog((line) => line.msg === 'old-generation worker finished');

  const fresh = await connectClient(port);
  t.after(() => fresh.destroy());
  assert.equal(await echo(fresh, 'new generation'), 'new generation');
  fresh.destroy();
  unhitch.kill('SIGTERM');
  assert.equal(await unhitch.exited(), 0);
});

test('ticket rotation reaches a draining old generation; SIGTERM shortens its drain to drain-timeout', async (t) => {
  const { port, configPath, conf } = await setup(t);
  writeFileSync(configPath, conf('ticket-rotation = 1\ndrain-timeout = 1\n'));
  const unhitch = startUnhitch([`--config=${configPath}`]);
  t.after(() => unhitch.kill('SIGKILL'));
  await unhitch.waitForLogs(isReady, 1);

  // A connection keeps generation 1 draining (reload-drain-timeout is an hour).
  const held = await connectClient(port);
  t.after(() => held.destroy());
  assert.equal(await echo(held, 'hold'), 'hold');
  unhitch.kill('SIGHUP');
  const reloaded = await unhitch.waitForLog((line) => line.msg === 'reloaded');
  const afterReload = (line: UnhitchLogLine) => (line.time as number) > (reloaded.time as number);
  await unhitch.waitForLog(
    (line) =>
      afterReload(line) &&
      line.msg === 'session ticket key received' &&
      line.generation === 1 &&
      line.draining === true,
    10_000,
  );
  await unhitch.waitForLog(
    (line) =>
      afterReload(line) && line.msg === 'session ticket key received' && line.generation === 2,
    10_000,
  );

  const closed = ended(held);
  unhitch.kill('SIGTERM');
  await closed;
  assert.equal(await unhitch.exited(), 0);
  const drained = unhitch.lines.find((line) => line.msg === 'old-generation worker drained');
  assert.equal(drained?.forcedClosed, 1, 'the old worker closed its connection itself');
  assert.equal(
    unhitch.lines.find((line) => line.code === 'UNHITCH_WORKER_KILLED'),
    undefined,
    'no worker needed SIGKILL',
  );
});
