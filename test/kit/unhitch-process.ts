/**
 * The real `unhitch` binary as a child process: its JSON log lines parsed as they come,
 * its workers found through /proc, stopped by PID.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { freePort } from './ports.js';

export const ROOT = resolve(import.meta.dirname, '../../..');
export const CLI = resolve(ROOT, 'dist/src/cli.js');

export interface UnhitchLogLine {
  readonly msg?: string;
  readonly pid?: number;
  readonly level?: number;
  readonly [key: string]: unknown;
}

export interface UnhitchProcess {
  readonly child: ChildProcess;
  readonly lines: UnhitchLogLine[];
  /** Everything printed that was not a JSON line (startup errors). */
  text(): string;
  waitForLog(
    predicate: (line: UnhitchLogLine) => boolean,
    timeoutMs?: number,
    what?: string,
  ): Promise<UnhitchLogLine>;
  /** Lines matching, once there are at least `count`. */
  waitForLogs(
    predicate: (line: UnhitchLogLine) => boolean,
    count: number,
    timeoutMs?: number,
  ): Promise<UnhitchLogLine[]>;
  workerPids(): number[];
  exited(): Promise<number | null>;
  kill(signal?: NodeJS.Signals): void;
}

export interface StartOptions {
  readonly cwd?: string;
  /** Command prefix, e.g. ['taskset', '-c', '1'] or ['prlimit', '--nofile=64']. */
  readonly wrapper?: readonly string[];
  /** Extra environment for the binary (and so its workers), e.g. NODE_OPTIONS. */
  readonly env?: NodeJS.ProcessEnv;
}

let rootNoticeShown = false;

/**
 * unhitch refuses to run workers as root (as Hitch does). Tests and CI run as root, so
 * a command line that names no user (flag or `user =` in its --config file) gets
 * `--user=nobody` (nobody's own group) here, said once on stderr so nobody is surprised
 * that the workers are uid 65534. Not root, or a user given: `args` unchanged.
 */
export function asNonRootWorkers(args: readonly string[], cwd = ROOT): string[] {
  if (process.getuid?.() !== 0) return [...args];
  if (args.some((arg) => arg === '-u' || arg.startsWith('--user'))) return [...args];
  for (const [index, arg] of args.entries()) {
    const path = arg.startsWith('--config=')
      ? arg.slice('--config='.length)
      : arg === '--config' || arg === '-f'
        ? args[index + 1]
        : undefined;
    if (path === undefined) continue;
    try {
      if (/^\s*user\s*=/m.test(readFileSync(resolve(cwd, path), 'utf8'))) return [...args];
    } catch {
      // unreadable: the binary says so itself
    }
  }
  if (!rootNoticeShown) {
    rootNoticeShown = true;
    process.stderr.write('test helper: running as root, so unhitch gets --user=nobody\n');
  }
  return ['--user=nobody', ...args];
}

export function startUnhitch(
  givenArgs: readonly string[],
  options: StartOptions = {},
): UnhitchProcess {
  const args = asNonRootWorkers(givenArgs, options.cwd);
  const wrapper = options.wrapper ?? [];
  const command = wrapper[0] ?? process.execPath;
  const commandArgs =
    wrapper.length > 0 ? [...wrapper.slice(1), process.execPath, CLI, ...args] : [CLI, ...args];
  const child = spawn(command, commandArgs, {
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: UnhitchLogLine[] = [];
  let text = '';
  // 'output' after each chunk of output and at exit: waits re-check only then.
  const changes = new EventEmitter();
  let partial = '';
  const onChunk = (chunk: Buffer): void => {
    partial += chunk.toString('utf8');
    const parts = partial.split('\n');
    partial = parts.pop() ?? '';
    for (const part of parts) {
      if (part.startsWith('{')) {
        try {
          lines.push(JSON.parse(part) as UnhitchLogLine);
          continue;
        } catch {
          // not JSON after all: keep it as text
        }
      }
      text += `${part}\n`;
    }
    changes.emit('output');
  };
  child.stdout?.on('data', onChunk);
  child.stderr?.on('data', onChunk);
  // 'close' comes after the last output (and once every process holding the pipes is gone),
  // so a line printed just before exit is in `lines` by the time exited() resolves.
  const exit = once(child, 'close').then(([code]) => code as number | null);
  let closed = false;
  child.once('close', () => {
    closed = true;
    changes.emit('output');
  });

  const wait = <T>(check: () => T | undefined, timeoutMs: number, what: string): Promise<T> =>
    new Promise((resolvePromise, reject) => {
      const settle = (): void => {
        const value = check();
        if (value !== undefined) finish(() => resolvePromise(value));
        else if (closed) finish(() => reject(failure('it exited')));
      };
      const timer = setTimeout(() => finish(() => reject(failure('timed out'))), timeoutMs);
      const finish = (then: () => void): void => {
        clearTimeout(timer);
        changes.off('output', settle);
        then();
      };
      const failure = (why: string): Error =>
        new Error(
          `unhitch: ${why} waiting for ${what} (exit ${child.exitCode})\n${text}${lines
            .slice(-20)
            .map((line) => JSON.stringify(line))
            .join('\n')}`,
        );
      changes.on('output', settle);
      settle();
    });

  return {
    child,
    lines,
    text: () => text,
    waitForLog: (predicate, timeoutMs = 15_000, what = 'a log line') =>
      wait(() => lines.find(predicate), timeoutMs, what),
    waitForLogs: (predicate, count, timeoutMs = 15_000) =>
      wait(
        () => {
          const found = lines.filter(predicate);
          return found.length >= count ? found : undefined;
        },
        timeoutMs,
        `${count} matching log lines`,
      ),
    workerPids: () =>
      child.pid === undefined ? [] : descendants(child.pid).filter((pid) => isNode(pid)),
    exited: () => exit,
    kill: (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
}

export interface SingleWorker {
  readonly unhitch: UnhitchProcess;
  readonly port: number;
  readonly workerPid: number;
}

/**
 * The binary with one worker on a free loopback port in front of `backendPort`, resolved
 * once that worker is ready: the shape every per-worker RSS and fd measurement needs. The
 * caller stops it; if it never gets ready it is killed here.
 */
export async function startSingleWorker(
  backendPort: number,
  certificatePath: string,
  extraArgs: readonly string[] = [],
  options: StartOptions = {},
): Promise<SingleWorker> {
  const port = await freePort();
  const unhitch = startUnhitch(
    [
      `--frontend=[127.0.0.1]:${port}`,
      `--backend=[127.0.0.1]:${backendPort}`,
      '--workers=1',
      ...extraArgs,
      certificatePath,
    ],
    options,
  );
  try {
    await unhitch.waitForLog((line) => line.msg === 'worker ready');
    const [workerPid] = unhitch.workerPids();
    if (workerPid === undefined) throw new Error('unhitch: no worker process found');
    return { unhitch, port, workerPid };
  } catch (error) {
    unhitch.kill('SIGKILL');
    throw error;
  }
}

/** Every process whose parent chain leads to `pid` (from /proc/<pid>/stat). */
export function descendants(pid: number): number[] {
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parents.set(Number(entry), Number(fields[1]));
    } catch {
      // the process ended while we looked
    }
  }
  const found: number[] = [];
  const frontier = [pid];
  while (frontier.length > 0) {
    const parent = frontier.pop() as number;
    for (const [child, ppid] of parents) {
      if (ppid === parent) {
        found.push(child);
        frontier.push(child);
      }
    }
  }
  return found;
}

function isNode(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('worker.js');
  } catch {
    return false;
  }
}

export interface RunResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Run a command to its exit, as a shell script would (`out=$(cmd); echo $?`), with all
 * it printed; killed after `timeoutMs`.
 */
export function runToExit(
  command: string,
  args: readonly string[],
  options: { readonly cwd?: string; readonly timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 10_000);
    child.once('error', reject);
    child.once('close', (status) => {
      clearTimeout(timer);
      resolvePromise({ status, stdout, stderr });
    });
  });
}
