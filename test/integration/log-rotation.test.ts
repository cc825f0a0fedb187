/**
 * Log rotation without copytruncate, as README promises: after `mv u.log u.log.1; touch
 * u.log` as root, the primary and every worker (running as nobody, a draining generation's
 * too) write into the new u.log; a reopen that fails keeps the file held, is logged once
 * with its code and is retried.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger } from '../../src/ops/log.js';
import { readLogFile } from '../helpers/log-file.js';
import { eventually } from '../kit/eventually.js';
import { makeCertificate } from '../kit/pki.js';
import { freePort } from '../kit/ports.js';
import { closeBackend, connectClient, startBackend } from '../kit/proxy-fixture.js';
import { startUnhitch, type UnhitchLogLine } from '../kit/unhitch-process.js';

const isRoot = process.getuid?.() === 0;
const cert = makeCertificate('log-rotation', ['localhost']);
/**
 * The binary's check interval here. A worker reopens on its own after three checks, the
 * primary at its first: two intervals of margin for a loaded machine to run the
 * primary's check first (else a worker's early EACCES would be logged).
 */
const CHECK_MS = 500;

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-log-rotation-'));
  // Like /var/log: the workers' user may look up names in it, not create them.
  chmodSync(dir, 0o755);
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function logged(path: string, predicate: (line: UnhitchLogLine) => boolean, what: string) {
  return eventually(() => readLogFile(path).find(predicate), 30_000, `${what} in ${path}`);
}

/** The files process `pid` holds open, by path. */
function openFiles(pid: number): string[] {
  const fds = `/proc/${pid}/fd`;
  const paths: string[] = [];
  for (const fd of readdirSync(fds)) {
    try {
      paths.push(readlinkSync(join(fds, fd)));
    } catch {
      // closed meanwhile
    }
  }
  return paths;
}

/** uid and primary gid of an account (id(1)). */
function userGroupIds(name: string): { uid: number; gid: number } {
  const id = (flag: string) =>
    Number(execFileSync('id', [flag, name], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}

/** What `mv u.log u.log.1; touch u.log` does, as root. */
function rotate(log: string): void {
  renameSync(log, `${log}.1`);
  writeFileSync(log, '', { mode: 0o644 });
}

test('a reopen that fails is logged once with UNHITCH_LOG_REOPEN and retried at each check; lines go on into the file held', async (t) => {
  const dir = tempDir(t);
  const log = join(dir, 'u.log');
  const logger = createLogger({ level: 'info', quiet: false, filename: log, reopenCheckMs: 20 });
  logger.info('before');
  renameSync(log, `${log}.1`);
  // The name cannot be opened for appending: a directory stands there.
  mkdirSync(log);
  await logged(`${log}.1`, (line) => line.code === 'UNHITCH_LOG_REOPEN', 'the failure');
  // Many more checks, each failing again: still one line.
  await sleep(20 * 20);
  logger.info('during');
  await logged(`${log}.1`, (line) => line.msg === 'during', 'a line written meanwhile');
  const failures = readLogFile(`${log}.1`).filter((line) => line.code === 'UNHITCH_LOG_REOPEN');
  assert.equal(failures.length, 1);
  const err = failures[0]?.err as { code?: string; message?: string } | undefined;
  assert.equal(err?.code, 'UNHITCH_LOG_FILE');
  assert.match(String(err?.message), /EISDIR/);

  rmdirSync(log);
  await logged(log, (line) => line.msg === 'log file reopened', 'the reopen, retried');
  logger.info('after');
  await logged(log, (line) => line.msg === 'after', 'a line after the reopen');
  assert.equal(readLogFile(`${log}.1`).filter((line) => line.msg === 'after').length, 0);
});

/** The binary with one worker writing `log` (checked every CHECK_MS), stopped after the test. */
async function startWithLog(t: TestContext, log: string, backendPort = 9) {
  const port = await freePort();
  const unhitch = startUnhitch(
    [
      `--frontend=[127.0.0.1]:${port}`,
      `--backend=[127.0.0.1]:${backendPort}`,
      '--workers=1',
      `--log-filename=${log}`,
      cert.combinedPath,
    ],
    { env: { UNHITCH_LOG_REOPEN_CHECK_MS: String(CHECK_MS) } },
  );
  t.after(() => unhitch.kill('SIGKILL'));
  await logged(log, (line) => line.msg === 'worker ready', 'worker ready');
  const [workerPid] = unhitch.workerPids();
  assert.ok(workerPid !== undefined);
  return { unhitch, port, workerPid };
}

test("at start the log file is handed to the workers' user and group, as Hitch 1.8 does (its issue 371)", {
  skip: !isRoot && 'needs root (workers as nobody)',
}, async (t) => {
  const dir = tempDir(t);
  const log = join(dir, 'u.log');
  // Made by root beforehand, as a packaged logrotate or an operator would leave it.
  writeFileSync(log, '', { mode: 0o640 });
  const nobody = userGroupIds('nobody');
  await startWithLog(t, log);
  const { uid, gid, mode } = statSync(log);
  assert.deepEqual({ uid, gid }, nobody);
  assert.equal(mode & 0o600, 0o600);
});

test('mv u.log u.log.1; touch u.log as root: the primary and every worker, a draining one too, write into the new u.log', {
  skip: !isRoot && 'needs root (workers as nobody)',
}, async (t) => {
  const dir = tempDir(t);
  const log = join(dir, 'u.log');
  const backend = await startBackend((socket) => socket.pipe(socket));
  t.after(() => closeBackend(backend));
  const { unhitch, port } = await startWithLog(t, log, backend.port);
  // A client held open keeps the first generation's worker draining after the reload.
  const client = await connectClient(port);
  t.after(() => client.destroy());
  // Its backend's reset below reaches it as a reset (abortive close), an 'error' here.
  client.on('error', () => {});
  client.write('x');
  await once(client, 'data');
  unhitch.kill('SIGHUP');
  await logged(log, (line) => line.msg === 'reloaded', 'the reload');
  const processes = [unhitch.child.pid as number, ...unhitch.workerPids()];
  assert.equal(processes.length, 3, 'the primary, a draining worker and a new one');

  rotate(log);
  const rotated = `${log}.1`;
  await eventually(
    () =>
      processes.every((pid) => {
        const files = openFiles(pid);
        return files.includes(log) && !files.includes(rotated);
      })
        ? true
        : undefined,
    30_000,
    `every process holding ${log} and not ${rotated}`,
  );
  // The draining worker's lines go into the new file: its client's backend resets.
  for (const socket of backend.sockets) socket.resetAndDestroy();
  const line = await logged(
    log,
    (entry) => entry.role === 'worker' && entry.generation === 1 && entry.reason !== undefined,
    "the draining worker's failure line",
  );
  assert.equal(line.reason, 'backend_error');
  const problems = [...readLogFile(log), ...readLogFile(rotated)].filter(
    (line) => line.code === 'UNHITCH_LOG_REOPEN',
  );
  assert.deepEqual(problems, []);
});

test('a worker that cannot open the rotated name keeps its file, logs once, and follows once the name is fixed', {
  skip: !isRoot && 'needs root (workers as nobody)',
}, async (t) => {
  const dir = tempDir(t);
  const log = join(dir, 'u.log');
  const rotated = `${log}.1`;
  const { workerPid } = await startWithLog(t, log);
  renameSync(log, rotated);
  // A symlink to a file of root's: the primary opens it, but hands no file over through
  // a symlink, so the worker (nobody) cannot open it.
  const elsewhere = join(dir, 'elsewhere.log');
  writeFileSync(elsewhere, '', { mode: 0o644 });
  symlinkSync(elsewhere, log);
  const isWorkerFailure = (line: UnhitchLogLine) =>
    line.role === 'worker' && line.code === 'UNHITCH_LOG_REOPEN';
  const failure = await logged(rotated, isWorkerFailure, "the worker's failed reopen");
  assert.match(String((failure.err as { message?: string } | undefined)?.message), /EACCES/);
  // Its own checks retry (after three, then at each one) and fail again, silently.
  await sleep(CHECK_MS * 6);
  assert.equal(readLogFile(rotated).filter(isWorkerFailure).length, 1);
  assert.equal(readLogFile(elsewhere).filter(isWorkerFailure).length, 0);
  assert.ok(openFiles(workerPid).includes(rotated), 'the worker keeps the file it held');

  rmSync(log);
  writeFileSync(log, '', { mode: 0o644 });
  await logged(
    log,
    (line) => line.role === 'worker' && line.msg === 'log file reopened',
    "the worker's reopen, retried",
  );
  assert.ok(openFiles(workerPid).includes(log));
  assert.ok(!openFiles(workerPid).includes(rotated));
});
