/**
 * The cluster when things go wrong: errors logged through pino's `err` serializer with a
 * registered code, and the last log line of a dying worker reaching the output.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { freePort } from '../helpers/ports.js';
import { closeBackend, makeCertificate, startBackend } from '../helpers/proxy-fixture.js';
import { startUnhitch, type UnhitchLogLine } from '../helpers/unhitch-process.js';

const cert = makeCertificate('cluster-failures', ['localhost']);

interface SerializedErr {
  readonly type?: string;
  readonly message?: string;
  readonly stack?: string;
  readonly code?: string;
}

test('a worker that cannot start (bad ecdh-curve) logs the Error with its stack and code as its last line, then exits', async (t) => {
  const backend = await startBackend((socket) => socket.pipe(socket));
  t.after(() => closeBackend(backend));
  const unhitch = startUnhitch([
    `--frontend=[127.0.0.1]:${await freePort()}`,
    `--backend=[127.0.0.1]:${backend.port}`,
    '--workers=1',
    '--ecdh-curve=no-such-curve',
    cert.combinedPath,
  ]);
  t.after(() => unhitch.kill('SIGKILL'));
  assert.equal(await unhitch.exited(), 1);
  assert.match(unhitch.text(), /\[UNHITCH_WORKERS_FAILED\]/);

  const workerLines = unhitch.lines.filter((line) => line.role === 'worker');
  // The worker exits right after telling the primary; only a synchronous flush on exit
  // gets this line out.
  const last = workerLines.at(-1) as UnhitchLogLine;
  assert.equal(last?.msg, 'worker failed to start');
  assert.equal(last.code, 'UNHITCH_WORKER_START');
  for (const line of [last, unhitch.lines.find((line) => line.msg === 'worker could not start')]) {
    const err = line?.err as SerializedErr;
    assert.equal(err.type, 'Error', JSON.stringify(line));
    assert.equal(err.message, 'Failed to set ECDH curve');
    assert.equal(err.code, 'ERR_CRYPTO_OPERATION_FAILED');
    assert.match(err.stack ?? '', /createSecureContext/);
    assert.equal(line?.level, 50);
  }
});

test('with log-filename, a worker that fails in its first milliseconds still has its last line in the file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-logfile-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const logFile = join(dir, 'sub', 'unhitch.log');
  const unhitch = startUnhitch([
    `--frontend=[127.0.0.1]:${await freePort()}`,
    '--backend=[127.0.0.1]:9',
    '--workers=1',
    '--ecdh-curve=no-such-curve',
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
  const last = lines.filter((line) => line.role === 'worker').at(-1);
  assert.equal(last?.msg, 'worker failed to start', JSON.stringify(lines));
  assert.equal((last?.err as SerializedErr | undefined)?.message, 'Failed to set ECDH curve');
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
