/**
 * The host names of the addresses the root primary binds (frontends, metrics) are resolved
 * by a child that dropped to uid 65534 first: seen with `strace -ff`, no thread of the
 * primary opens /etc/hosts (the resolver's first read), and every thread that does belongs
 * to a process that called setuid(65534) before.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { connect } from 'node:tls';
import { LOOKUP_CHILD_ID, unprivilegedLookupAll } from '../../src/net/bind-lookup.js';
import { eventually } from '../kit/eventually.js';
import { makeCertificate } from '../kit/pki.js';
import { freePort } from '../kit/ports.js';
import { closeBackend, startBackend } from '../kit/proxy-fixture.js';
import { straceAvailable } from '../kit/strace.js';
import { CLI } from '../kit/unhitch-process.js';

const cert = makeCertificate('root-lookup', ['localhost']);

function rootWithStrace(t: TestContext): boolean {
  if (process.getuid?.() !== 0) {
    t.skip('needs root: the point is what the root primary does not do');
    return false;
  }
  if (!straceAvailable()) {
    t.skip('needs strace (.ci/run installs it)');
    return false;
  }
  return true;
}

interface TracedCall {
  readonly tid: number;
  readonly time: number;
  readonly line: string;
}

/** `strace -ff -ttt -o PREFIX` files → every call, with its thread id and time. */
function readTrace(directory: string): TracedCall[] {
  const calls: TracedCall[] = [];
  for (const name of readdirSync(directory)) {
    const tid = Number(/^trace\.(\d+)$/.exec(name)?.[1]);
    if (!Number.isInteger(tid)) continue;
    for (const line of readFileSync(join(directory, name), 'utf8').split('\n')) {
      const time = Number(/^(\d+\.\d+) /.exec(line)?.[1]);
      if (Number.isFinite(time)) calls.push({ tid, time, line });
    }
  }
  return calls;
}

/** The id a traced clone or clone3 call returned (the new thread or process), if any. */
function cloneResult(line: string): number | undefined {
  const child = Number(/^\S+ clone3?\(.*\)\s+= (\d+)$/.exec(line)?.[1]);
  return Number.isInteger(child) && child > 0 ? child : undefined;
}

/**
 * Thread id → the process (thread group) it belongs to, from the clone calls: a clone
 * with CLONE_THREAD adds a thread to the caller's process, any other starts a process.
 */
function threadGroups(calls: readonly TracedCall[], rootPid: number): Map<number, number> {
  const group = new Map<number, number>([[rootPid, rootPid]]);
  const clones = calls
    .map((call) => ({ call, child: cloneResult(call.line) }))
    .filter((clone): clone is { call: TracedCall; child: number } => clone.child !== undefined)
    .sort((a, b) => a.call.time - b.call.time);
  for (const { call, child } of clones) {
    const parent = group.get(call.tid) ?? call.tid;
    group.set(child, call.line.includes('CLONE_THREAD') ? parent : child);
  }
  return group;
}

/** The NUL-separated command line of process `pid`; empty once it is gone. */
function commandLine(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
}

/** Runs `args` of the CLI under strace -ff; `whileRunning` before it is ended (SIGTERM). */
async function traced(
  t: TestContext,
  args: readonly string[],
  whileRunning?: () => Promise<void>,
): Promise<{ calls: TracedCall[]; primary: number; exitCode: number | null }> {
  const directory = mkdtempSync(join(tmpdir(), 'unhitch-root-lookup-'));
  t.after(() => rmSync(directory, { recursive: true, force: true }));
  const strace = spawn(
    'strace',
    [
      '-ff',
      '-ttt',
      '-qq',
      '-s',
      '4096',
      '-e',
      'trace=execve,openat,setuid,clone,clone3',
      '-o',
      join(directory, 'trace'),
      process.execPath,
      CLI,
      ...args,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  strace.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
  });
  strace.stderr.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
  });
  const exited = once(strace, 'exit');
  t.after(() => {
    if (strace.exitCode === null) strace.kill('SIGKILL');
  });
  if (whileRunning !== undefined) {
    // The CLI is the child of strace that runs it: strace first forks short-lived children
    // of its own to probe ptrace (test_ptrace_get_syscall_info and others), so the first
    // child listed may be one of those.
    const running = await eventually(
      () =>
        readFileSync(`/proc/${strace.pid}/task/${strace.pid}/children`, 'utf8')
          .split(' ')
          .map(Number)
          .find((pid) => {
            // A probe runs strace's own command line, whose arguments name the CLI too.
            const [program, script] = commandLine(pid);
            return pid > 0 && program === process.execPath && script === CLI;
          }),
      10_000,
      'the traced CLI',
    );
    // Should the test fail before it ends the CLI: strace's end would leave it running.
    t.after(() => {
      if (commandLine(running)[1] === CLI) process.kill(running, 'SIGKILL');
    });
    await whileRunning();
    process.kill(running, 'SIGTERM');
  }
  const [exitCode] = (await exited) as [number | null];
  const calls = readTrace(directory);
  // The CLI is the first process strace traces, and all else it traces the CLI starts: the
  // earliest traced call is the CLI's execve.
  const first = calls.reduce<TracedCall | undefined>(
    (earliest, call) => (earliest === undefined || call.time < earliest.time ? call : earliest),
    undefined,
  );
  assert.ok(first, `nothing traced\n${output}`);
  assert.ok(first.line.includes(`execve("${process.execPath}"`), first.line);
  assert.ok(first.line.includes(CLI), first.line);
  return { calls, primary: first.tid, exitCode };
}

/** The assertion of the file's header, over one traced run. */
function assertResolvedUnprivileged(calls: readonly TracedCall[], primary: number): void {
  const groups = threadGroups(calls, primary);
  const openers = calls.filter((call) => call.line.includes('"/etc/hosts"'));
  assert.ok(openers.length > 0, 'some process read /etc/hosts: the names were resolved');
  for (const opener of openers) {
    const group = groups.get(opener.tid);
    assert.notEqual(group, primary, `thread ${opener.tid} of the root primary read /etc/hosts`);
    const dropped = calls.some(
      (call) =>
        groups.get(call.tid) === group &&
        call.time <= opener.time &&
        new RegExp(` setuid\\(${LOOKUP_CHILD_ID}\\)\\s+= 0$`).test(call.line),
    );
    assert.ok(dropped, `process ${group} read /etc/hosts without dropping to ${LOOKUP_CHILD_ID}`);
  }
}

test('as root, the lookup child resolves as uid 65534 and hands back the addresses or the resolver error', async (t) => {
  if (process.getuid?.() !== 0) {
    t.skip('needs root: the child drops from root');
    return;
  }
  const addresses = await unprivilegedLookupAll('localhost', false);
  assert.ok(addresses.includes('127.0.0.1'), addresses.join(' '));
  await assert.rejects(unprivilegedLookupAll('no-such-host.invalid'), (error: unknown) => {
    assert.match(String((error as NodeJS.ErrnoException).code), /^(ENOTFOUND|EAI_AGAIN)$/);
    return true;
  });
});

/** `--test` as root under strace over a config whose frontend and backend hosts are given. */
async function testedConfig(t: TestContext, frontendHost: string, backendHost: string) {
  const directory = mkdtempSync(join(tmpdir(), 'unhitch-root-lookup-conf-'));
  t.after(() => rmSync(directory, { recursive: true, force: true }));
  const config = join(directory, 'hitch.conf');
  writeFileSync(
    config,
    [
      `frontend = "[${frontendHost}]:${await freePort()}"`,
      `backend = "[${backendHost}]:9"`,
      `pem-file = "${cert.combinedPath}"`,
      'user = "nobody"',
      '',
    ].join('\n'),
  );
  const { calls, primary, exitCode } = await traced(t, ['--test', `--config=${config}`]);
  assert.equal(exitCode, 0);
  assertResolvedUnprivileged(calls, primary);
}

test('--test as root with a frontend named by a host name: the primary never reads the resolver answer', async (t) => {
  if (!rootWithStrace(t)) return;
  await testedConfig(t, 'localhost', '127.0.0.1');
});

test('--test as root with the backend named by a host name (checked to resolve, as Hitch checks it): the primary never reads the resolver answer', async (t) => {
  if (!rootWithStrace(t)) return;
  await testedConfig(t, '127.0.0.1', 'localhost');
});

test('a start as root with the frontend and metrics named by host names: resolved unprivileged, and served', async (t) => {
  if (!rootWithStrace(t)) return;
  const backend = await startBackend((socket) => socket.pipe(socket));
  t.after(() => closeBackend(backend));
  const port = await freePort();
  const metricsPort = await freePort();
  const { calls, primary } = await traced(
    t,
    [
      `--frontend=[localhost]:${port}`,
      `--backend=[127.0.0.1]:${backend.port}`,
      `--metrics=localhost:${metricsPort}`,
      '--workers=1',
      '--user=nobody',
      cert.combinedPath,
    ],
    async () => {
      // Served on the IPv4 address localhost resolved to.
      await eventually(
        () =>
          new Promise<true | undefined>((resolve) => {
            const socket = connect({ port, host: '127.0.0.1', rejectUnauthorized: false });
            socket.once('secureConnect', () => {
              socket.destroy();
              resolve(true);
            });
            socket.once('error', () => resolve(undefined));
          }),
        60_000,
        `a TLS handshake on 127.0.0.1:${port}`,
      );
    },
  );
  assertResolvedUnprivileged(calls, primary);
});
