/**
 * `unhitch --test` ≡ a real start: over a generated corpus of hitch.conf files
 * (test/helpers/config-corpus.ts), `--test` exits 0 exactly when the same file started
 * for real gets every worker listening on free loopback ports, but for the deliberate
 * exceptions of ops/preflight.ts (here: root without `user`, a warning from --test).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { ROOT_WORKERS_WARNING } from '../../src/ops/preflight.js';
import { configText, makeFixtures, SHAPE } from '../helpers/config-corpus.js';
import { freePort } from '../kit/ports.js';
import { CLI } from '../kit/unhitch-process.js';

const CORPUS_SIZE = 200;
const PARALLEL = 6;
const SEED = 0x7e57;
/** A start that neither listens nor exits within this has no verdict and is run again. */
const START_TIMEOUT_MS = 60_000;

interface Outcome {
  readonly ok: boolean;
  readonly output: string;
  /** Neither listened nor exited in time: no verdict (a loaded machine), not a failure. */
  readonly timedOut?: boolean;
}

// The V8 code cache cuts each process's start-up: 400+ processes run here.
const CHILD_ENV = {
  ...process.env,
  NODE_COMPILE_CACHE: join(tmpdir(), 'unhitch-test-compile-cache'),
};

/**
 * Every unhitch this file has started and not yet seen exit. A timeout (the test's, or the
 * runner's for the whole file, which sends SIGTERM) must not leave them running: a primary
 * left behind keeps its workers, its services process and its ports.
 */
const running = new Set<ChildProcess>();
function track(child: ChildProcess): void {
  running.add(child);
  child.once('exit', () => running.delete(child));
  child.once('error', () => running.delete(child));
}
function killRunning(): void {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
}
process.once('exit', killRunning);
process.once('SIGTERM', () => {
  killRunning();
  process.exit(143);
});

function runTest(configPath: string): Promise<Outcome> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, '--test', `--config=${configPath}`], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: CHILD_ENV,
    });
    track(child);
    let output = '';
    child.stderr.on('data', (chunk: Buffer) => {
      output += chunk.toString('utf8');
    });
    // A spawn that fails (e.g. its directory is gone) emits 'error' and may never 'close'.
    child.on('error', (err) => resolve({ ok: false, output: `${output}${err.message}` }));
    child.on('close', (status) => resolve({ ok: status === 0, output }));
  });
}

/**
 * Start for real; success is the "listening" report (on stdout, or in the log file when
 * the config names one), then a clean SIGTERM stop.
 */
function runStart(configPath: string, cwd: string, logFile: string | undefined): Promise<Outcome> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, `--config=${configPath}`], {
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: CHILD_ENV,
    });
    track(child);
    let output = '';
    let listened = false;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = !listened;
      child.kill('SIGKILL');
    }, START_TIMEOUT_MS);
    const onData = (chunk: Buffer): void => {
      output += chunk.toString('utf8');
      if (!listened && output.includes('"msg":"listening"')) {
        listened = true;
        child.kill('SIGTERM');
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const logWatch =
      logFile === undefined
        ? undefined
        : setInterval(() => {
            if (listened || !existsSync(logFile)) return;
            const text = readFileSync(logFile, 'utf8');
            if (text.includes('"msg":"listening"')) {
              output += text;
              listened = true;
              child.kill('SIGTERM');
            }
          }, 25);
    const settle = (): void => {
      clearTimeout(timer);
      clearInterval(logWatch);
      if (logFile !== undefined && existsSync(logFile)) output += readFileSync(logFile, 'utf8');
      resolve({ ok: listened, output, timedOut });
    };
    child.on('error', (err) => {
      output += err.message;
      settle();
    });
    child.on('close', settle);
  });
}

// 400 runs of the binary: about 100 s of CPU, so a loaded machine needs more than the
// suite's 120 s default.
test('--test exits 0 iff a real start of the same hitch.conf gets its workers listening', {
  timeout: 600_000,
}, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-equiv-'));
  t.signal.addEventListener('abort', killRunning);
  t.after(() => {
    killRunning();
    rmSync(dir, { recursive: true, force: true });
  });
  const fx = makeFixtures(dir);
  const shapes = fc.sample(SHAPE, { numRuns: CORPUS_SIZE, seed: SEED });
  const results: Array<{ test: Outcome; start: Outcome; config: string }> = [];
  const queue = shapes.map((shape, index) => ({ shape, index }));
  const work = async (): Promise<void> => {
    // Once the test has ended (a timeout too), start nothing more: its directory is gone
    // and a run left going would keep this file's process alive.
    for (let item = queue.shift(); item !== undefined && !t.signal.aborted; item = queue.shift()) {
      // A port taken by someone else between freePort() and the bind, or a start with no
      // verdict in time on a loaded machine, is not a disagreement: try again.
      for (let attempt = 0; ; attempt++) {
        const runDir = join(dir, `run-${item.index}-${attempt}`);
        mkdirSync(runDir);
        const ports = [await freePort(), await freePort()];
        const config = configText(item.shape, fx, ports, runDir);
        const configPath = join(runDir, 'hitch.conf');
        writeFileSync(configPath, config);
        const checked = await runTest(configPath);
        const logFile = /^log-filename = "(.*)"$/m.exec(config)?.[1];
        const started = await runStart(configPath, runDir, logFile);
        const noVerdict = started.timedOut === true || /EADDRINUSE/.test(started.output);
        if (t.signal.aborted) return;
        if (!started.ok && noVerdict && attempt < 3) continue;
        results.push({ test: checked, start: started, config });
        break;
      }
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, work));

  // The one deliberate exception the corpus reaches (ops/preflight.ts
  // TEST_DIFFERS_FROM_START): as root without `user`, --test passes with a warning that
  // the start refuses, as Hitch's --test does.
  const startExpected = (checked: Outcome): boolean =>
    checked.ok && !checked.output.includes(ROOT_WORKERS_WARNING);
  const disagreements = results.filter((result) => startExpected(result.test) !== result.start.ok);
  const good = results.filter((result) => result.start.ok).length;
  t.diagnostic(
    `${results.length} configs: ${good} started, ${results.length - good} refused; ${disagreements.length} disagreements`,
  );
  for (const result of disagreements.slice(0, 3)) {
    t.diagnostic(
      `--test ${result.test.ok ? 'passed' : 'failed'}, start ${result.start.ok ? 'listened' : 'failed'}:\n${result.config}\n--test said:\n${result.test.output}\nstart said:\n${result.start.output.slice(-2000)}`,
    );
  }
  assert.equal(results.length, CORPUS_SIZE);
  assert.deepEqual(
    disagreements.map((result) => result.config),
    [],
    'configs where --test and the start disagree',
  );
  // Both sides of the equivalence are exercised, not just one.
  assert.ok(good >= 40, `at least 40 configs start (${good})`);
  assert.ok(
    results.length - good >= 40,
    `at least 40 configs are refused (${results.length - good})`,
  );
});
