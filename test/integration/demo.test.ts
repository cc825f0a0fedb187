/**
 * `npm start` as the README promises it: certificate made on first run, a tracker behind
 * unhitch, the wss:// URL printed, announces answered, Ctrl-C stops everything with
 * status 0 — also through npm, where one Ctrl-C reaches every process of the group.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type TestContext, test } from 'node:test';
import { npmCommand } from '../helpers/npm.js';
import { announceOnce } from '../helpers/webtorrent.js';
import { eventually } from '../kit/eventually.js';
import { freePortPair } from '../kit/ports.js';

const ROOT = resolve(import.meta.dirname, '../../..');
const DEMO = join(ROOT, 'dist/src/demo/start.js');

interface Watched {
  readonly output: () => string;
  /** Resolves once `text` has been printed; rejects if the process ends first. */
  readonly printed: (text: string, timeoutMs: number) => Promise<void>;
  /** Exit code, or the signal's name, or a note that it did not end in time. */
  readonly ended: (timeoutMs: number) => Promise<number | string>;
}

function watch(child: ChildProcess): Watched {
  let output = '';
  const append = (chunk: string): void => {
    output += chunk;
    child.emit('printed');
  };
  child.stdout?.setEncoding('utf8').on('data', append);
  child.stderr?.setEncoding('utf8').on('data', append);
  const exit = once(child, 'exit').then(([code, signal]) => (code ?? signal) as number | string);
  const bounded = <T>(promise: Promise<T>, timeoutMs: number, what: string) =>
    Promise.race([
      promise,
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error(`${what}:\n${output}`)), timeoutMs).unref(),
      ),
    ]);
  return {
    output: () => output,
    printed: (text, timeoutMs) =>
      bounded(
        new Promise<void>((resolvePromise, reject) => {
          const check = (): void => {
            if (!output.includes(text)) return;
            child.off('printed', check);
            resolvePromise();
          };
          child.on('printed', check);
          void exit.then((end) => reject(new Error(`exited (${end}) before printing ${text}`)));
          check();
        }),
        timeoutMs,
        `${text} not printed in ${timeoutMs} ms`,
      ),
    ended: (timeoutMs) =>
      bounded(exit, timeoutMs, `still running ${timeoutMs} ms after the signal`).catch(
        (error: Error) => error.message,
      ),
  };
}

/** The demo itself (no npm) in a fresh directory, on a free port pair. */
async function startDemo(t: TestContext) {
  const cwd = mkdtempSync(join(tmpdir(), 'unhitch-demo-'));
  t.after(() => rmSync(cwd, { recursive: true, force: true }));
  const port = await freePortPair();
  const demo = spawn(process.execPath, [DEMO], {
    cwd,
    env: { ...process.env, UNHITCH_DEMO_PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => demo.kill('SIGKILL'));
  return { cwd, port, demo, watched: watch(demo) };
}

test('npm start: demo tracker answers announces over wss through unhitch', async (t) => {
  const { cwd, port, demo, watched } = await startDemo(t);
  const url = `wss://127.0.0.1:${port}`;
  await watched.printed(url, 20_000);
  assert.ok(existsSync(join(cwd, 'tmp/tls/cert.crt')), 'certificate made on first run');
  assert.ok(existsSync(join(cwd, 'tmp/tls/key.pem')));

  // The URL is printed once every worker listens: the first attempt must get through.
  const response = await announceOnce(url, { timeoutMs: 10_000 }).catch((error: Error) =>
    assert.fail(
      `first announce after the URL was printed failed: ${error.message}\n${watched.output()}`,
    ),
  );
  assert.ok(response, `no announce response through the demo:\n${watched.output()}`);
  assert.equal(response.action, 'announce');
  assert.equal(typeof response.interval, 'number');
  // The URL and how to stop it are the start's last lines: the primary's start-up lines
  // (written asynchronously by pino) are out before them.
  const output = watched.output();
  const stopLine = output.indexOf('Ctrl-C stops it.');
  for (const line of ['"msg":"listening"', '"msg":"frontend"']) {
    const at = output.indexOf(line);
    assert.ok(at !== -1 && at < stopLine, `${line} before the URL lines:\n${output}`);
  }

  demo.kill('SIGINT');
  assert.equal(await watched.ended(20_000), 0, watched.output());
});

test('npm start: Ctrl-C (SIGINT to the whole process group) ends npm and the demo with status 0', async (t) => {
  const port = await freePortPair();
  const [command, prefix] = npmCommand();
  // detached: its own process group, as a terminal runs a foreground job; the terminal's
  // Ctrl-C is a SIGINT to every process in it (npm, the demo, its workers and tracker).
  const npm = spawn(command, [...prefix, 'start'], {
    cwd: ROOT,
    detached: true,
    env: { ...process.env, UNHITCH_DEMO_PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const group = npm.pid as number;
  t.after(() => {
    try {
      process.kill(-group, 'SIGKILL');
    } catch {
      // the group is gone: the clean path
    }
  });
  const watched = watch(npm);
  await watched.printed(`wss://127.0.0.1:${port}`, 30_000);

  process.kill(-group, 'SIGINT');
  assert.equal(await watched.ended(20_000), 0, watched.output());
  assert.doesNotMatch(watched.output(), /npm (error|ERR!)/, 'npm reports no error');
  assert.doesNotMatch(watched.output(), /second stop signal/, 'one Ctrl-C is one stop');
  assert.match(watched.output(), /"msg":"stopped"/, 'the proxy drained and stopped');
  // Nothing of the demo outlives it: the group empties (the tracker ends just after npm).
  await eventually(
    () => {
      try {
        process.kill(-group, 0);
        return undefined;
      } catch (error) {
        return (error as NodeJS.ErrnoException).code === 'ESRCH' ? true : undefined;
      }
    },
    5_000,
    'every process of the demo to end',
  );
});

test('npm start: Ctrl-C during start-up is a clean stop too (status 0)', async (t) => {
  const { demo, watched } = await startDemo(t);
  // The tracker listens before the proxy starts: the interrupt lands while it starts.
  await watched.printed('demo tracker (bittorrent-tracker) on', 20_000);
  demo.kill('SIGINT');
  assert.equal(await watched.ended(20_000), 0, watched.output());
  assert.doesNotMatch(watched.output(), /second stop signal/);
});
