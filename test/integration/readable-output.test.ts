/**
 * Output for people: on a terminal (a real pty, from `script`) every log line is one
 * readable line and the start-up says what each frontend serves; through a pipe the
 * lines stay JSON unless `--log-format=pretty` asks; `npm start`'s demo ends its start-up
 * with the wss:// URL and how to stop it.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { makeSelfSigned } from '../../src/tls/selfsigned.js';
import { freePort, freePortPair } from '../kit/ports.js';
import { asNonRootWorkers, CLI, ROOT, startUnhitch } from '../kit/unhitch-process.js';

const READABLE = /^\d\d:\d\d:\d\d\.\d{3} (TRACE|DEBUG|INFO |WARN |ERROR|FATAL) /;

interface Output {
  readonly child: ChildProcess;
  /** Lines so far, without the pty's carriage returns. */
  lines(): string[];
  /** Resolves with the lines once `done(lines)` holds; rejects on exit or after the timeout. */
  until(done: (lines: string[]) => boolean, what: string, timeoutMs?: number): Promise<string[]>;
  exited(): Promise<unknown>;
}

function collect(child: ChildProcess): Output {
  let text = '';
  const exit = once(child, 'close');
  const lines = (): string[] => text.replaceAll('\r', '').split('\n');
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    text += chunk;
    child.emit('output');
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    text += chunk;
    child.emit('output');
  });
  return {
    child,
    lines,
    until: (done, what, timeoutMs = 30_000) =>
      new Promise((resolvePromise, reject) => {
        const timer = setTimeout(
          () => finish(new Error(`timed out waiting for ${what}`)),
          timeoutMs,
        );
        const check = (): void => {
          if (done(lines())) finish();
        };
        const onExit = (): void => finish(new Error(`exited before ${what}`));
        const finish = (error?: Error): void => {
          clearTimeout(timer);
          child.off('output', check);
          child.off('close', onExit);
          if (error) reject(new Error(`${error.message}:\n${text}`));
          else resolvePromise(lines());
        };
        child.on('output', check);
        child.once('close', onExit);
        check();
      }),
    exited: () => exit,
  };
}

/** `args` run by `script` on a pseudo-terminal; the command's PID comes first ("PID=…"). */
function onTerminal(t: TestContext, args: readonly string[], env: NodeJS.ProcessEnv = {}) {
  const quoted = args.map((arg) => `'${arg.replaceAll("'", "'\\''")}'`).join(' ');
  const child = spawn('script', ['-qfec', `echo PID=$$; exec ${quoted}`, '/dev/null'], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = collect(child);
  const pid = async (): Promise<number> => {
    const lines = await output.until((seen) => seen.some((line) => line.startsWith('PID=')), 'PID');
    return Number(lines.find((line) => line.startsWith('PID='))?.slice(4));
  };
  t.after(async () => {
    if (child.exitCode === null) {
      const commandPid = await pid().catch(() => undefined);
      if (commandPid) process.kill(commandPid, 'SIGKILL');
      child.kill('SIGKILL');
    }
  });
  return { output, pid };
}

function certificate(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-readable-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return makeSelfSigned({ dir, stem: 'site', dnsNames: ['tracker.test'] }).combinedPath;
}

async function twoFrontends(t: TestContext): Promise<string[]> {
  const [first, second] = [await freePort(), await freePort()];
  return asNonRootWorkers([
    `--frontend=[127.0.0.1]:${first}`,
    `--frontend=[127.0.0.1]:${second}`,
    '--backend=[127.0.0.1]:9',
    '--workers=1',
    '--tls-protos=TLSv1.3',
    certificate(t),
  ]);
}

const summaries = (lines: string[]): string[] =>
  lines.filter((line) => / frontend frontend=/.test(line));

test('on a terminal every line is readable, with one summary line per frontend', async (t) => {
  const args = await twoFrontends(t);
  const { output, pid } = onTerminal(t, [process.execPath, CLI, ...args]);
  const lines = await output.until((seen) => summaries(seen).length === 2, 'two frontend lines');
  const logLines = lines.filter((line) => line !== '' && !line.startsWith('PID='));
  assert.deepEqual(
    logLines.filter((line) => !READABLE.test(line)),
    [],
    'every line readable, none JSON',
  );
  const [first, second] = summaries(lines);
  const ports = args.filter((arg) => arg.startsWith('--frontend=')).map((arg) => arg.split(':')[1]);
  assert.match(first ?? '', new RegExp(`frontend=127\\.0\\.0\\.1:${ports[0]} `));
  assert.match(second ?? '', new RegExp(`frontend=127\\.0\\.0\\.1:${ports[1]} `));
  for (const line of [first, second]) {
    assert.match(line ?? '', / INFO {2}primary {2}frontend /);
    assert.match(line ?? '', / certificates=tracker\.test /);
    assert.match(line ?? '', / tls=TLSv1\.3 /);
    assert.match(line ?? '', / groups=X25519MLKEM768:X25519:P-256:P-384$/);
  }
  process.kill(await pid(), 'SIGTERM');
  const after = await output.until(
    (seen) => seen.some((line) => / primary {2}stopped$/.test(line)),
    'the stop',
  );
  assert.ok(after.every((line) => !line.startsWith('{')));
  await output.exited();
});

test('--daemon on a terminal: the launcher relays the start-up as readable lines', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-daemon-tty-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const pidfile = join(dir, 'unhitch.pid');
  const args = [...(await twoFrontends(t)), '--daemon', `--pidfile=${pidfile}`];
  const { output } = onTerminal(t, [process.execPath, CLI, ...args]);
  // The launcher exits 0 once every worker listens; the daemon goes on without a terminal.
  await output.exited();
  // Read now: the directory holding the pidfile goes in an earlier-registered after hook.
  const daemonPid = Number(readFileSync(pidfile, 'utf8'));
  t.after(() => process.kill(daemonPid, 'SIGTERM'));
  assert.equal(output.child.exitCode, 0, output.lines().join('\n'));
  const lines = output.lines().filter((line) => line !== '' && !line.startsWith('PID='));
  assert.equal(summaries(lines).length, 2, lines.join('\n'));
  // Hitch's notice that a daemon without log-filename or syslog logs nothing comes first.
  assert.deepEqual(
    lines.filter((line) => !READABLE.test(line) && !line.startsWith('warning: ')),
    [],
  );
});

test('through a pipe the lines stay JSON, the summaries as fields', async (t) => {
  const proxy = startUnhitch(await twoFrontends(t));
  t.after(() => proxy.kill('SIGKILL'));
  const found = await proxy.waitForLogs((line) => line.msg === 'frontend', 2);
  for (const line of found) {
    assert.match(String(line.frontend), /^127\.0\.0\.1:\d+$/);
    assert.deepEqual(line.certificates, ['tracker.test']);
    assert.deepEqual(line.tls, ['TLSv1.3']);
    assert.equal(line.groups, 'X25519MLKEM768:X25519:P-256:P-384');
  }
  assert.doesNotMatch(proxy.text(), READABLE, 'no readable line among the JSON');
  proxy.kill('SIGTERM');
  await proxy.exited();
});

test('--log-format=pretty makes the lines readable through a pipe too', async (t) => {
  const child = spawn(process.execPath, [CLI, ...(await twoFrontends(t)), '--log-format=pretty'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => child.kill('SIGKILL'));
  const output = collect(child);
  const lines = await output.until((seen) => summaries(seen).length === 2, 'two frontend lines');
  assert.deepEqual(
    lines.filter((line) => line !== '' && !READABLE.test(line)),
    [],
  );
  child.kill('SIGTERM');
  await output.exited();
});

test('npm start on a terminal: readable start-up, then the wss:// URL and how to stop it, last', async (t) => {
  const cwd = mkdtempSync(join(tmpdir(), 'unhitch-demo-tty-'));
  t.after(() => rmSync(cwd, { recursive: true, force: true }));
  const port = await freePortPair();
  const { output, pid } = onTerminal(
    t,
    [
      'sh',
      '-c',
      `cd '${cwd}' && exec '${process.execPath}' '${join(ROOT, 'dist/src/demo/start.js')}'`,
    ],
    { UNHITCH_DEMO_PORT: String(port) },
  );
  const stopHint = 'Ctrl-C stops it.';
  const lines = await output.until((seen) => seen.includes(stopHint), 'the stop hint');
  const shown = lines.filter((line) => line.trim() !== '');
  assert.equal(shown.at(-1), stopHint);
  assert.match(shown.at(-2) ?? '', new RegExp(`^unhitch demo: wss://127\\.0\\.0\\.1:${port} -> `));
  const startup = shown.slice(0, -2).filter((line) => READABLE.test(line));
  assert.ok(
    startup.some((line) => / primary {2}frontend frontend=127\.0\.0\.1:/.test(line)),
    shown.join('\n'),
  );
  assert.ok(
    shown.every((line) => !line.startsWith('{')),
    'no JSON line on a terminal',
  );
  process.kill(await pid(), 'SIGINT');
  await output.until((seen) => seen.some((line) => / primary {2}stopped$/.test(line)), 'the stop');
  await output.exited();
});
