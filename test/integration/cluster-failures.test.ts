/**
 * The cluster when things go wrong: errors logged through pino's `err` serializer with a
 * registered code, and the last log line of a dying worker reaching the output.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { type AddressInfo, createServer, connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  assertServes,
  exhaustDescriptors,
  isWorkerReady,
  startCluster,
} from '../helpers/cluster.js';
import { makeCertificate } from '../kit/pki.js';
import { freePort } from '../kit/ports.js';
import { closeBackend, connectClient, startBackend, waitFor } from '../kit/proxy-fixture.js';
import { startUnhitch, type UnhitchLogLine, type UnhitchProcess } from '../kit/unhitch-process.js';

const cert = makeCertificate('cluster-failures', ['localhost']);

interface SerializedErr {
  readonly type?: string;
  readonly message?: string;
  readonly stack?: string;
  readonly code?: string;
}

/** A port something else already listens on: binding it fails with EADDRINUSE. */
async function takenPort(t: { after: (fn: () => void) => void }): Promise<number> {
  const squatter = createServer();
  squatter.listen(0, '127.0.0.1');
  await once(squatter, 'listening');
  t.after(() => squatter.close());
  return (squatter.address() as AddressInfo).port;
}

test('a bad ecdh-curve is refused before any worker starts, as --test refuses it', async (t) => {
  const unhitch = startUnhitch([
    `--frontend=[127.0.0.1]:${await freePort()}`,
    '--backend=[127.0.0.1]:9',
    '--workers=1',
    '--ecdh-curve=no-such-curve',
    cert.combinedPath,
  ]);
  t.after(() => unhitch.kill('SIGKILL'));
  assert.equal(await unhitch.exited(), 1);
  assert.match(unhitch.text(), /Failed to set ECDH curve \[ERR_CRYPTO_OPERATION_FAILED\]/);
  assert.deepEqual(
    unhitch.lines.filter((line) => line.role === 'worker'),
    [],
    'no worker was forked',
  );
});

test('a frontend whose address is taken: the bind Error is logged with its stack and codes, then exit 1', async (t) => {
  const backend = await startBackend((socket) => socket.pipe(socket));
  t.after(() => closeBackend(backend));
  const unhitch = startUnhitch([
    `--frontend=[127.0.0.1]:${await takenPort(t)}`,
    `--backend=[127.0.0.1]:${backend.port}`,
    '--workers=1',
    cert.combinedPath,
  ]);
  t.after(() => unhitch.kill('SIGKILL'));
  assert.equal(await unhitch.exited(), 1);
  // 'exit' can come before the last bytes in the pipe were read.
  assert.match(unhitch.text(), /\[UNHITCH_WORKERS_FAILED\]/);
  // The primary binds every worker's socket (cluster/listen-sockets.ts): the failure is
  // its own, before the worker is told to start.
  const line = unhitch.lines.find((entry) => entry.msg === 'worker could not start');
  assert.equal(line?.code, 'UNHITCH_WORKER_START', JSON.stringify(unhitch.lines));
  assert.equal(line?.level, 50);
  const err = line?.err as SerializedErr & { errno?: string };
  assert.equal(err.type, 'ListenSocketError');
  assert.equal(err.code, 'UNHITCH_LISTEN');
  assert.equal(err.errno, 'EADDRINUSE');
  assert.match(err.message ?? '', /EADDRINUSE/);
  assert.match(err.stack ?? '', /bind/i);
});

test('with log-filename, a start that fails in its first milliseconds still has its failure line in the file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-logfile-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const logFile = join(dir, 'sub', 'unhitch.log');
  const unhitch = startUnhitch([
    `--frontend=[127.0.0.1]:${await takenPort(t)}`,
    '--backend=[127.0.0.1]:9',
    '--workers=1',
    `--log-filename=${logFile}`,
    cert.combinedPath,
  ]);
  t.after(() => unhitch.kill('SIGKILL'));
  assert.equal(await unhitch.exited(), 1);
  // Nothing but the start-up failure on stderr: no worker crashed while exiting.
  assert.doesNotMatch(unhitch.text(), /not ready|Error:/);
  const lines = readFileSync(logFile, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as UnhitchLogLine);
  const failure = lines.find((line) => line.code === 'UNHITCH_WORKER_START');
  assert.equal(failure?.msg, 'worker could not start', JSON.stringify(lines));
  assert.equal((failure?.err as SerializedErr | undefined)?.code, 'UNHITCH_LISTEN');
  assert.match((failure?.err as SerializedErr | undefined)?.message ?? '', /EADDRINUSE/);
});

/**
 * Connections the drain closes are logged by the worker in its last moments: it exits
 * as soon as its "drained" message has left.
 */
async function lastLinesOnDrain(
  t: { after: (fn: () => void) => void },
  extraArgs: readonly string[],
  ready: (unhitch: UnhitchProcess) => Promise<unknown>,
): Promise<{ unhitch: UnhitchProcess; count: number }> {
  const backend = await startBackend((socket) => socket.pipe(socket));
  t.after(() => closeBackend(backend));
  const port = await freePort();
  const unhitch = startUnhitch([
    `--frontend=[127.0.0.1]:${port}`,
    `--backend=[127.0.0.1]:${backend.port}`,
    '--workers=1',
    '--log-level=debug',
    '--drain-timeout=0',
    ...extraArgs,
    cert.combinedPath,
  ]);
  t.after(() => unhitch.kill('SIGKILL'));
  await ready(unhitch);
  const count = 40;
  const clients = await Promise.all(Array.from({ length: count }, () => connectClient(port)));
  t.after(() => {
    for (const client of clients) client.destroy();
  });
  // Every connection reached the backend: each is a live splice the drain must close.
  await Promise.all(
    clients.map(async (client) => {
      client.write('x');
      await once(client, 'data');
    }),
  );
  unhitch.kill('SIGTERM');
  assert.equal(await unhitch.exited(), 0);
  return { unhitch, count };
}

const closedByDrain = (line: UnhitchLogLine) =>
  line.role === 'worker' && line.reason === 'shutdown';

test('a worker that exits right after its drain still has its last log lines in the output', async (t) => {
  const { unhitch, count } = await lastLinesOnDrain(t, [], (running) =>
    running.waitForLog((line) => line.msg === 'worker ready'),
  );
  assert.equal(unhitch.lines.filter(closedByDrain).length, count, unhitch.text());
});

test('with log-filename, the same last lines are in the file and no worker dies on exit', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-logfile-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const logFile = join(dir, 'sub', 'unhitch.log');
  const readLog = (): UnhitchLogLine[] =>
    existsSync(logFile)
      ? readFileSync(logFile, 'utf8')
          .split('\n')
          .filter((line) => line.startsWith('{') && line.endsWith('}'))
          .map((line) => JSON.parse(line) as UnhitchLogLine)
      : [];
  const { unhitch, count } = await lastLinesOnDrain(t, [`--log-filename=${logFile}`], () =>
    waitFor(() => readLog().some((line) => line.msg === 'worker ready'), 15_000, 'worker ready'),
  );
  // Before, the destination opened the file in the background and a worker exiting
  // before that finished died of "sonic boom is not ready yet".
  assert.doesNotMatch(unhitch.text(), /not ready|Error:/);
  assert.equal(readLog().filter(closedByDrain).length, count);
});

test('a log-filename that cannot be opened: exit 1 with UNHITCH_LOG_FILE', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-logfile-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'file'), '');
  const unhitch = startUnhitch([
    `--frontend=[127.0.0.1]:${await freePort()}`,
    '--backend=[127.0.0.1]:9',
    '--workers=1',
    // A path through a regular file: ENOTDIR even for root.
    `--log-filename=${join(dir, 'file', 'unhitch.log')}`,
    cert.combinedPath,
  ]);
  t.after(() => unhitch.kill('SIGKILL'));
  assert.equal(await unhitch.exited(), 1);
  assert.match(unhitch.text(), /cannot open log file .*\[UNHITCH_LOG_FILE\]/);
});

/** One echo round trip through the proxy: it serves. */
async function echoes(port: number): Promise<void> {
  const client = await connectClient(port);
  client.write('ping');
  const [reply] = (await once(client, 'data')) as [Buffer];
  assert.equal(reply.toString(), 'ping');
  client.destroy();
}

test('ticket-key-file cannot be written at rotation: the primary logs UNHITCH_TICKET_KEY_SAVE, keeps rotating and serving', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-ticketkey-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const backend = await startBackend((socket) => socket.pipe(socket));
  t.after(() => closeBackend(backend));
  const keyDir = join(dir, 'keys');
  mkdirSync(keyDir);
  const keyFile = join(keyDir, 'tickets.key');
  const port = await freePort();
  const unhitch = startUnhitch([
    `--frontend=[127.0.0.1]:${port}`,
    `--backend=[127.0.0.1]:${backend.port}`,
    '--workers=1',
    `--ticket-key-file=${keyFile}`,
    '--ticket-rotation=1',
    cert.combinedPath,
  ]);
  t.after(() => unhitch.kill('SIGKILL'));
  await unhitch.waitForLog((line) => line.msg === 'worker ready');

  // The key file's directory becomes a regular file: every write fails with ENOTDIR,
  // even for root (a read-only directory would not stop root).
  renameSync(keyDir, join(dir, 'keys.moved'));
  writeFileSync(keyDir, 'not a directory');
  const failures = await unhitch.waitForLogs((line) => line.code === 'UNHITCH_TICKET_KEY_SAVE', 2);
  const failure = failures[0] as UnhitchLogLine;
  assert.equal(failure.level, 50);
  assert.equal(failure.file, keyFile);
  assert.equal((failure.err as SerializedErr).code, 'UNHITCH_TICKET_KEY_FILE');
  assert.match((failure.err as SerializedErr).message ?? '', /ENOTDIR/);
  assert.equal(unhitch.child.exitCode, null, 'the primary is alive');
  await echoes(port);

  // The disk comes back: a later rotation writes the file again.
  rmSync(keyDir);
  renameSync(join(dir, 'keys.moved'), keyDir);
  const restored = readFileSync(keyFile);
  await waitFor(() => !readFileSync(keyFile).equals(restored), 10_000, 'the key file rewritten');
  await echoes(port);
  unhitch.kill('SIGTERM');
  assert.equal(await unhitch.exited(), 0);
});

test('a certificate warning in the log carries its code (a key readable by others)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-certwarn-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const pem = join(dir, 'open.pem');
  writeFileSync(pem, readFileSync(cert.combinedPath), { mode: 0o644 });
  chmodSync(pem, 0o644);
  const unhitch = startUnhitch([
    `--frontend=[127.0.0.1]:${await freePort()}`,
    '--backend=[127.0.0.1]:9',
    '--workers=1',
    pem,
  ]);
  t.after(() => unhitch.kill('SIGKILL'));
  const warning = await unhitch.waitForLog((line) =>
    /readable by group or others/.test(String(line.msg)),
  );
  assert.equal(warning.code, 'UNHITCH_CERTIFICATE_WARNING');
  assert.equal(warning.level, 40);
  await unhitch.waitForLog((line) => line.msg === 'worker ready');
  unhitch.kill('SIGTERM');
  assert.equal(await unhitch.exited(), 0);
});

test('a fork that fails (the primary out of descriptors, EMFILE): retried with a doubling back-off, a queued client is reset not left hanging, new ones are refused, and the only worker comes back and serves', async (t) => {
  const { unhitch, port } = await startCluster(t, { workers: 1 });
  const primaryPid = unhitch.child.pid as number;
  const [workerPid] = unhitch.workerPids();
  assert.ok(workerPid);
  const restoreDescriptors = await exhaustDescriptors(primaryPid);
  t.after(restoreDescriptors);

  process.kill(workerPid, 'SIGKILL');
  const died = await unhitch.waitForLog((line) => line.msg === 'worker died; restarting');
  // Arriving now, a client is queued on the slot's socket, which the primary still holds.
  const queued = netConnect({ host: '127.0.0.1', port });
  queued.on('error', () => {});
  await once(queued, 'connect');
  // Reset (ECONNRESET), so 'close' after an 'error': once() would reject on the error.
  const queuedClosed = new Promise((resolve) => queued.once('close', resolve));

  // Each retry fails for real and doubles the delay; from 1 s on, the socket goes.
  const isSpawnFailure = (line: UnhitchLogLine) => line.code === 'UNHITCH_WORKER_SPAWN';
  const failures = await unhitch.waitForLogs(isSpawnFailure, 3, 30_000);
  const delays = [died, ...failures.slice(0, 3)].map((line) => line.restartInMs as number);
  const first = delays[0] as number;
  assert.deepEqual(delays, [first, first * 2, first * 4, first * 8], 'the delay doubles');
  for (const failure of failures)
    assert.match(JSON.stringify(failure.err), /EMFILE/, 'the fork failed with EMFILE');
  await unhitch.waitForLog(
    (line) => line.msg === 'worker keeps crashing: its listening sockets closed until it is back',
  );
  await queuedClosed;
  const refused = netConnect({ host: '127.0.0.1', port });
  const [refusal] = (await once(refused, 'error')) as [NodeJS.ErrnoException];
  assert.equal(refusal.code, 'ECONNREFUSED', 'refused at once while the slot is down');

  await restoreDescriptors();
  await unhitch.waitForLogs(isWorkerReady, 2, 60_000);
  await assertServes(port);
  assert.equal(unhitch.workerPids().length, 1);
});

test('SIGTERM while a slot waits out its restart back-off: the primary exits at once, not when the restart was due', async (t) => {
  const { unhitch } = await startCluster(t, { workers: 1 });
  const [workerPid] = unhitch.workerPids();
  assert.ok(workerPid);
  const restoreDescriptors = await exhaustDescriptors(unhitch.child.pid as number);
  t.after(restoreDescriptors);
  process.kill(workerPid, 'SIGKILL');
  // The fork keeps failing: wait for a restart due seconds from now.
  const backOff = await unhitch.waitForLog(
    (line) => line.code === 'UNHITCH_WORKER_SPAWN' && Number(line.restartInMs) >= 3_200,
    30_000,
  );
  const restartDueAt = Date.now() + Number(backOff.restartInMs);
  await restoreDescriptors();
  unhitch.kill('SIGTERM');
  assert.equal(await unhitch.exited(), 0);
  const exitedAt = Date.now();
  assert.ok(
    exitedAt < restartDueAt,
    `exited ${exitedAt - restartDueAt} ms after the restart was due: its timer held the primary`,
  );
  assert.ok(unhitch.lines.some((line) => line.msg === 'stopped'));
});
