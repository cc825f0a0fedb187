/**
 * System calls a running process makes while some work runs: `strace -c -f` attached to
 * it (and every thread) for the length of the work. The count is exact, so it is what a
 * per-connection cost is checked and compared by (bench/conn-syscalls, connection-cost
 * tests). Needs strace and ptrace rights over the processes (root, as in CI).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface SyscallCount {
  readonly calls: number;
  readonly errors: number;
}

/** How long strace may take to attach before the measurement is given up. */
const ATTACH_TIMEOUT_MS = 10_000;

/** Whether strace is installed. */
export function straceAvailable(): boolean {
  try {
    execFileSync('strace', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** strace -c's table → calls (and failed calls) by syscall name. */
export function parseStraceSummary(text: string): Map<string, SyscallCount> {
  const counts = new Map<string, SyscallCount>();
  for (const line of text.split('\n')) {
    // % time, seconds, usecs/call, calls, [errors], syscall
    const fields = line.trim().split(/\s+/);
    if (fields.length < 5 || fields.length > 6 || !/^\d/.test(fields[0] ?? '')) continue;
    const name = fields[fields.length - 1] ?? '';
    if (name === 'total') continue;
    counts.set(name, {
      calls: Number(fields[3]),
      errors: fields.length === 6 ? Number(fields[4]) : 0,
    });
  }
  return counts;
}

/**
 * Runs `work` with `strace -c -f` attached to every process of `pids`, and returns its
 * result with the syscalls counted meanwhile. `traceArgs`: more strace options (say
 * `-e trace=setsockopt`). Throws when strace cannot attach (no ptrace rights: EPERM).
 */
export async function countSyscalls<T>(
  pids: readonly number[],
  work: () => Promise<T>,
  traceArgs: readonly string[] = [],
): Promise<{ result: T; counts: Map<string, SyscallCount> }> {
  const directory = mkdtempSync(join(tmpdir(), 'unhitch-strace-'));
  const outPath = join(directory, 'summary.txt');
  const strace: ChildProcess = spawn(
    'strace',
    ['-c', '-f', ...traceArgs, '-o', outPath, ...pids.flatMap((pid) => ['-p', String(pid)])],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const exited = once(strace, 'exit');
  try {
    // strace says "Process N attached" for each process once it holds it.
    let said = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`strace did not attach: ${said}`)),
        ATTACH_TIMEOUT_MS,
      );
      strace.stderr?.on('data', (chunk: Buffer) => {
        said += chunk.toString();
        if (pids.every((pid) => said.includes(`Process ${pid} attached`))) {
          clearTimeout(timer);
          resolve();
        }
      });
      strace.once('exit', () => {
        clearTimeout(timer);
        reject(new Error(`strace exited: ${said.trim()}`));
      });
    });
    const result = await work();
    strace.kill('SIGINT');
    await exited;
    return { result, counts: parseStraceSummary(readFileSync(outPath, 'utf8')) };
  } finally {
    if (strace.exitCode === null && strace.signalCode === null) {
      strace.kill('SIGKILL');
      await exited;
    }
    rmSync(directory, { recursive: true, force: true });
  }
}
