/**
 * Child processes for benches: pinned to a CPU with taskset, optionally with a raised open-files
 * limit via prlimit, all tracked so they are stopped (by PID, descendants included) on normal
 * exit, SIGINT/SIGTERM and uncaught errors.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { processTree } from '../../test/kit/proc.js';

export interface StartOptions {
  /** Shown in error messages. */
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  /** CPU list for taskset (e.g. "1"); omitted → not pinned. */
  readonly cpu?: string;
  /** Soft+hard RLIMIT_NOFILE for the child, via prlimit. */
  readonly openFilesLimit?: number;
  readonly env?: NodeJS.ProcessEnv;
  /** Called with every stdout line (for readiness or progress parsing). */
  readonly onStdoutLine?: (line: string) => void;
  /** Echo the child's stderr to ours. */
  readonly echoStderr?: boolean;
  /** Give the child a stdin pipe (child.stdin) for commands; otherwise it reads /dev/null. */
  readonly stdinPipe?: boolean;
}

export interface BenchProcess {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Last few KiB of stderr, for error messages. */
  stderrTail(): string;
  /** Resolves with the exit code (or signal name). */
  readonly exited: Promise<number | string>;
  stop(): Promise<void>;
}

const running = new Set<BenchProcess>();
/** Set on SIGINT/SIGTERM: no new children may start while the others are being stopped. */
let shuttingDown = false;

export function commandExists(command: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function wrapCommand(options: StartOptions): [string, string[]] {
  let argv = [options.command, ...options.args];
  if (options.openFilesLimit !== undefined) {
    argv = [
      'prlimit',
      `--nofile=${options.openFilesLimit}:${options.openFilesLimit}`,
      '--',
      ...argv,
    ];
  }
  if (options.cpu !== undefined) argv = ['taskset', '-c', options.cpu, ...argv];
  const [command, ...args] = argv as [string, ...string[]];
  return [command, args];
}

export function startProcess(options: StartOptions): BenchProcess {
  if (shuttingDown) {
    throw Object.assign(new Error(`${options.name}: not started, shutting down`), {
      code: 'BENCH_SHUTTING_DOWN',
    });
  }
  const [command, args] = wrapCommand(options);
  const child = spawn(command, args, {
    env: options.env ?? process.env,
    stdio: [options.stdinPipe ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  });
  if (child.pid === undefined) {
    throw Object.assign(new Error(`${options.name}: could not start ${command}`), {
      code: 'BENCH_SPAWN_FAILED',
    });
  }
  const pid = child.pid;
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-4096);
    if (options.echoStderr) process.stderr.write(chunk);
  });
  let pending = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => {
    pending += chunk;
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) options.onStdoutLine?.(line);
  });
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
    child.once('error', (err) => resolve(`spawn error: ${err.message}`));
  });
  const handle: BenchProcess = {
    name: options.name,
    pid,
    child,
    stderrTail: () => stderr,
    exited,
    stop: () => stopProcess(handle),
  };
  running.add(handle);
  void exited.then(() => running.delete(handle));
  return handle;
}

function signalPids(pids: readonly number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM the process and its descendants; SIGKILL whatever is left after 3 s. */
export async function stopProcess(handle: BenchProcess): Promise<void> {
  const tree = processTree(handle.pid);
  signalPids(tree.length > 0 ? tree : [handle.pid], 'SIGTERM');
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline && tree.some(isAlive)) {
    await new Promise((r) => setTimeout(r, 50));
  }
  signalPids(tree.filter(isAlive), 'SIGKILL');
  await Promise.race([handle.exited, new Promise((r) => setTimeout(r, 1000))]);
  running.delete(handle);
}

/** Synchronous last-resort cleanup (process 'exit' handlers cannot await). */
function killAllNow(): void {
  for (const handle of running) {
    signalPids(processTree(handle.pid), 'SIGKILL');
    signalPids([handle.pid], 'SIGKILL');
  }
  running.clear();
}

export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((handle) => stopProcess(handle)));
}

let cleanupInstalled = false;

/** Stops every started process when this process ends, however it ends. */
export function installCleanup(): void {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  process.once('exit', killAllNow);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      shuttingDown = true;
      process.stderr.write(`\n${signal}: stopping ${running.size} child process(es)\n`);
      void stopAll().finally(() => process.exit(130));
    });
  }
  process.once('uncaughtException', (err) => {
    process.stderr.write(`${err.stack ?? err.message}\n`);
    killAllNow();
    process.exit(1);
  });
}

/** Rejects if the process exits before `ready` resolves. */
export async function untilReady<T>(handle: BenchProcess, ready: Promise<T>): Promise<T> {
  const early = handle.exited.then((status) => {
    throw Object.assign(
      new Error(`${handle.name} exited early (${status}): ${handle.stderrTail().trim()}`),
      { code: 'BENCH_PROCESS_EXITED' },
    );
  });
  return Promise.race([ready, early]);
}

/** True once SIGINT/SIGTERM arrived: scripts must not write partial results then. */
export function isShuttingDown(): boolean {
  return shuttingDown;
}
