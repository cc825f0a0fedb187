/**
 * The operations surface a script written for Hitch relies on, driven the way a shell
 * script drives it: `--daemon` with a pidfile and `--dbg-listen`, SIGHUP rewriting the
 * listen file, SIGTERM through the pidfile, syslog, and the log file reopened on SIGHUP.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { connect } from 'node:tls';
import { makeSelfSigned } from '../../src/tls/selfsigned.js';
import { loopbackListenInodes, socketOwners } from '../helpers/proc-net.js';
import { freePort } from '../kit/ports.js';
import { waitFor } from '../kit/proxy-fixture.js';
import {
  asNonRootWorkers,
  CLI,
  descendants,
  type RunResult,
  runToExit,
  startUnhitch,
} from '../kit/unhitch-process.js';

/** Run the launcher to its exit, as `unhitch --daemon …; echo $?` would. */
function launch(args: readonly string[], cwd: string): Promise<RunResult> {
  return runToExit(process.execPath, [CLI, ...asNonRootWorkers(args, cwd)], {
    cwd,
    timeoutMs: 60_000,
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The daemon leads its own process group (setsid): this ends it and its workers. */
function killGroup(pid: number | undefined): void {
  if (pid === undefined || !alive(pid)) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

function readPid(path: string): number {
  const pid = Number(readFileSync(path, 'utf8').trim());
  assert.ok(Number.isInteger(pid) && pid > 1, `pidfile holds a PID: ${pid}`);
  return pid;
}

function listenFile(path: string): string[] {
  return readFileSync(path, 'utf8').split('\n').filter(Boolean);
}

/** A TLS handshake with the address a dbg-listen line names. */
async function handshake(line: string): Promise<string | null> {
  const match = /^\[?([^\]]+)\]?:(\d+)$/.exec(line);
  assert.ok(match, `ip:port line: ${line}`);
  const socket = connect({
    host: match[1],
    port: Number(match[2]),
    rejectUnauthorized: false,
    servername: 'localhost',
  });
  try {
    await once(socket, 'secureConnect');
    return socket.getProtocol();
  } finally {
    socket.destroy();
  }
}

/** One worker, unpinned, on a free loopback port, the backend never dialled. */
async function oneWorker(pem: string, ...flags: string[]): Promise<string[]> {
  const port = await freePort();
  return [
    ...flags,
    '--workers=1',
    '--pin-workers=off',
    '-f',
    `[127.0.0.1]:${port}`,
    '-b',
    '[127.0.0.1]:9',
    pem,
  ];
}

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-ops-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('--daemon exits 0 once listening; the pidfile holds the detached primary, dbg-listen its sockets; SIGTERM via the pidfile stops it', async (t) => {
  const dir = tempDir(t);
  const pem = makeSelfSigned({ dir, stem: 'site' }).combinedPath;
  const port = await freePort();
  const pidfile = join(dir, 'unhitch.pid');
  const listen = join(dir, 'listen');
  let daemonPid: number | undefined;
  t.after(() => killGroup(daemonPid));

  const result = await launch(
    [
      '--daemon',
      `--pidfile=${pidfile}`,
      `--dbg-listen=${listen}`,
      '--workers=1',
      '--pin-workers=off',
      '-f',
      `[127.0.0.1]:${port}`,
      '-f',
      '[127.0.0.1]:0',
      '-b',
      '[127.0.0.1]:9',
      pem,
    ],
    dir,
  );
  assert.equal(result.status, 0, result.stderr);
  daemonPid = readPid(pidfile);
  // Nothing to log to: Hitch's warning, and the startup report on the launcher's stderr.
  assert.match(result.stderr, /daemonizing with neither 'syslog' nor 'log-filename'/);
  assert.match(result.stderr, /"msg":"listening"/);
  assert.doesNotMatch(result.stderr, /works in "\/"/, 'every path given is absolute');

  // Detached: its own session, working in "/" like Hitch, stdio on /dev/null.
  const stat = readFileSync(`/proc/${daemonPid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  assert.equal(Number(fields[3]), daemonPid, 'session id is its own PID (setsid)');
  assert.equal(readlinkSync(`/proc/${daemonPid}/cwd`), '/');
  for (const fd of [0, 1, 2])
    assert.equal(readlinkSync(`/proc/${daemonPid}/fd/${fd}`), '/dev/null');
  assert.match(readFileSync(`/proc/${daemonPid}/cmdline`, 'utf8'), /cli\.js/);

  // The file is there when the launcher returns, and names real, answering sockets.
  const lines = listenFile(listen);
  assert.equal(lines.length, 2, lines.join('\n'));
  assert.equal(lines[0], `127.0.0.1:${port}`);
  assert.match(lines[1] ?? '', /^127\.0\.0\.1:\d+$/);
  assert.notEqual(lines[1], '127.0.0.1:0', 'the bound port, not the configured 0');
  for (const line of lines) assert.match((await handshake(line)) ?? '', /^TLSv1\.[23]$/);

  process.kill(daemonPid, 'SIGTERM');
  const pid = daemonPid;
  await waitFor(() => !alive(pid), 20_000, 'the daemon to exit after SIGTERM');
  assert.equal(existsSync(pidfile), false, 'the pidfile is removed on exit');
});

test("--daemon exits 0 only once every worker listens (the unit's Type=forking readiness)", async (t) => {
  const dir = tempDir(t);
  const pem = makeSelfSigned({ dir, stem: 'site' }).combinedPath;
  const port = await freePort();
  const pidfile = join(dir, 'unhitch.pid');
  const workers = 3;
  let daemonPid: number | undefined;
  t.after(() => killGroup(daemonPid));
  const result = await launch(
    [
      '--daemon',
      `--pidfile=${pidfile}`,
      `--workers=${workers}`,
      '--pin-workers=off',
      '-f',
      `[127.0.0.1]:${port}`,
      '-b',
      '[127.0.0.1]:9',
      pem,
    ],
    dir,
  );
  assert.equal(result.status, 0, result.stderr);
  daemonPid = readPid(pidfile);
  // Read at once: what systemd would see when the launcher (ExecStart) exits. The primary
  // binds one socket per worker and the kernel queues connections on it before the worker
  // has it, so a connection succeeding proves nothing; each worker holding its socket does.
  const sockets = loopbackListenInodes(port);
  assert.equal(sockets.length, workers, 'one SO_REUSEPORT socket per worker');
  const children = new Set(descendants(daemonPid));
  const holders = sockets.map((inode) =>
    socketOwners(inode).filter((pid) => pid !== daemonPid && children.has(pid)),
  );
  for (const [slot, owners] of holders.entries())
    assert.equal(owners.length, 1, `socket ${slot} is held by its worker: ${owners.join(',')}`);
  assert.equal(new Set(holders.flat()).size, workers, 'each worker holds its own socket');
});

test('--daemon with a config the start refuses exits 1 with the error and leaves nothing running', async (t) => {
  const dir = tempDir(t);
  const pem = makeSelfSigned({ dir, stem: 'site' }).combinedPath;
  const port = await freePort();
  const pidfile = join(dir, 'unhitch.pid');
  const result = await launch(
    [
      '--daemon',
      `--pidfile=${pidfile}`,
      '--workers=1',
      '-c',
      'NO-SUCH-CIPHER',
      '-f',
      `[127.0.0.1]:${port}`,
      pem,
    ],
    dir,
  );
  assert.equal(result.status, 1);
  assert.match(result.stderr, /no cipher match/);
  assert.match(result.stderr, /\[ERR_SSL_NO_CIPHER_MATCH\]/);
  assert.equal(existsSync(pidfile), false);
  // The port stays free: no daemon kept it.
  const probe = connect({ host: '127.0.0.1', port, rejectUnauthorized: false });
  const [error] = (await once(probe, 'error')) as [NodeJS.ErrnoException];
  assert.equal(error.code, 'ECONNREFUSED');
});

test('SIGHUP with a changed frontend rewrites the dbg-listen file: the new port appears, the old one goes', async (t) => {
  const dir = tempDir(t);
  const pem = makeSelfSigned({ dir, stem: 'site' }).combinedPath;
  const [first, second, third] = [await freePort(), await freePort(), await freePort()];
  const config = join(dir, 'hitch.conf');
  const pidfile = join(dir, 'unhitch.pid');
  const listen = join(dir, 'listen');
  const log = join(dir, 'unhitch.log');
  const write = (ports: readonly number[]): void =>
    writeFileSync(
      config,
      [
        ...ports.map((port) => `frontend = "[127.0.0.1]:${port}"`),
        'backend = "[127.0.0.1]:9"',
        `pem-file = "${pem}"`,
        'workers = 1',
        'pin-workers = off',
        `pidfile = "${pidfile}"`,
        `log-filename = "${log}"`,
        'daemon = on',
        '',
      ].join('\n'),
    );
  write([first]);
  let daemonPid: number | undefined;
  t.after(() => killGroup(daemonPid));
  const result = await launch([`--config=${config}`, `--dbg-listen=${listen}`], dir);
  assert.equal(result.status, 0, result.stderr);
  assert.doesNotMatch(result.stderr, /daemonizing with neither/, 'a log file is configured');
  daemonPid = readPid(pidfile);
  assert.deepEqual(listenFile(listen), [`127.0.0.1:${first}`]);

  write([second, third]);
  process.kill(daemonPid, 'SIGHUP');
  await waitFor(
    () => listenFile(listen).join(',') !== `127.0.0.1:${first}`,
    30_000,
    'the listen file to change after SIGHUP',
  );
  assert.deepEqual(listenFile(listen), [`127.0.0.1:${second}`, `127.0.0.1:${third}`]);
  for (const line of listenFile(listen)) assert.ok(await handshake(line));
  // The old generation stopped accepting once the new one listened.
  const probe = connect({ host: '127.0.0.1', port: first, rejectUnauthorized: false });
  const [error] = (await once(probe, 'error')) as [NodeJS.ErrnoException];
  assert.equal(error.code, 'ECONNREFUSED');
  assert.match(readFileSync(log, 'utf8'), /"msg":"reloaded"/);
});

test('syslog = on: every process sends its lines to the syslog socket with the facility and its PID', async (t) => {
  const dir = tempDir(t);
  const pem = makeSelfSigned({ dir, stem: 'site' }).combinedPath;
  const socketPath = join(dir, 'log.sock');
  chmodSync(dir, 0o755);
  // A syslog daemon we control: one unix datagram socket, every datagram printed.
  const listener = spawn(
    'python3',
    [
      '-c',
      [
        'import os, socket, sys',
        's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
        's.bind(sys.argv[1])',
        // World-writable like /dev/log: as root the workers (and their logger) are nobody.
        'os.chmod(sys.argv[1], 0o666)',
        'print("ready", flush=True)',
        'while True:',
        '    print(s.recv(65536).decode("utf-8", "replace").replace("\\n", " "), flush=True)',
      ].join('\n'),
      socketPath,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.after(() => {
    if (listener.exitCode === null) listener.kill('SIGKILL');
  });
  let received = '';
  listener.stdout.on('data', (chunk: Buffer) => {
    received += chunk.toString('utf8');
  });
  await waitFor(() => received.startsWith('ready'), 10_000, 'the syslog listener');

  const env = { ...process.env, UNHITCH_SYSLOG_SOCKET: socketPath };
  const proxy = startUnhitch(await oneWorker(pem, '--syslog', '--syslog-facility=local3'), {
    env,
  });
  t.after(() => proxy.kill('SIGKILL'));
  await proxy.waitForLog((line) => line.msg === 'listening');
  const primaryPid = proxy.child.pid;
  const [workerPid] = proxy.workerPids();
  // local3 (19) × 8 + info (6) = 158; RFC 3164 with the tag and the sender's PID.
  await waitFor(
    () => new RegExp(`<158>.* unhitch\\[${primaryPid}\\]: listening `).test(received),
    10_000,
    `the primary's "listening" line in syslog:\n${received}`,
  );
  await waitFor(
    () => new RegExp(`<158>.* unhitch\\[${workerPid}\\]: worker listening `).test(received),
    10_000,
    `the worker's "worker listening" line in syslog:\n${received}`,
  );
  // The same lines still go to stdout ("in addition to stderr/stdout").
  assert.ok(proxy.lines.some((line) => line.msg === 'listening'));
  proxy.kill('SIGTERM');
  assert.equal(await proxy.exited(), 0);
});

test('SIGHUP reopens log-filename by name: after logrotate moved it, new lines go to a new file', async (t) => {
  const dir = tempDir(t);
  const pem = makeSelfSigned({ dir, stem: 'site' }).combinedPath;
  const log = join(dir, 'unhitch.log');
  const proxy = startUnhitch(await oneWorker(pem, `--log-filename=${log}`));
  t.after(() => proxy.kill('SIGKILL'));
  await waitFor(
    () => existsSync(log) && readFileSync(log, 'utf8').includes('"msg":"listening"'),
    20_000,
    'the listening line in the log file',
  );
  renameSync(log, `${log}.1`);
  proxy.kill('SIGHUP');
  await waitFor(
    () => existsSync(log) && readFileSync(log, 'utf8').includes('"msg":"reloaded"'),
    30_000,
    'the reload logged in a new file',
  );
  assert.doesNotMatch(readFileSync(`${log}.1`, 'utf8'), /"msg":"reloaded"/);
  proxy.kill('SIGTERM');
  assert.equal(await proxy.exited(), 0);
});

test('--daemon with relative paths resolves them as Hitch: config, pem and log from the start directory, the pidfile and reloads from "/"', async (t) => {
  const dir = tempDir(t);
  makeSelfSigned({ dir, stem: 'site' });
  const port = await freePort();
  writeFileSync(
    join(dir, 'hitch.conf'),
    `frontend = "[127.0.0.1]:${port}"\nbackend = "[127.0.0.1]:9"\npem-file = "site.pem"\nworkers = 1\npin-workers = off\nlog-filename = "unhitch.log"\n`,
  );
  const pidName = `unhitch-ops-${process.pid}-${port}.pid`;
  const rootPidfile = join('/', pidName);
  t.after(() => rmSync(rootPidfile, { force: true }));
  let daemonPid: number | undefined;
  t.after(() => killGroup(daemonPid));
  const result = await launch(['--daemon', '--config=hitch.conf', `--pidfile=${pidName}`], dir);
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stderr, /the daemon works in "\/": hitch\.conf, .*site\.pem/);
  daemonPid = readPid(rootPidfile);
  assert.equal(existsSync(join(dir, pidName)), false, 'not in the start directory');
  const log = join(dir, 'unhitch.log');
  await waitFor(() => readFileSync(log, 'utf8').includes('"msg":"listening"'), 10_000, 'log');
  // As with Hitch, a reload reads the relative --config from "/", and is refused.
  process.kill(daemonPid, 'SIGHUP');
  await waitFor(
    () => readFileSync(log, 'utf8').includes('reload rejected'),
    20_000,
    'the reload refused in the log',
  );
  assert.ok(await handshake(`127.0.0.1:${port}`), 'the running configuration keeps serving');
});
