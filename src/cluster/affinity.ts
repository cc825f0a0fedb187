/**
 * CPU pinning of workers inside the CPU mask we inherited. Hitch pins worker i to
 * CPU i regardless of `taskset`/cgroup cpusets; we pick the i-th CPU of the allowed
 * set instead, so `taskset -c 2,3 unhitch` keeps workers on CPUs 2 and 3.
 *
 * Pinning uses `taskset -a -p` because node has no sched_setaffinity binding and a
 * node process has many threads (libuv pool, V8 platform workers): `-a` applies the
 * mask to every thread, not just the main one.
 */

import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { UnhitchError } from '../errors.js';

export class AffinityError extends UnhitchError<'UNHITCH_AFFINITY'> {
  constructor(message: string, cause?: unknown) {
    super('UNHITCH_AFFINITY', message, { cause });
    this.name = 'AffinityError';
  }
}

/** Linux caps CPU numbers well below this; anything larger is junk, not a CPU. */
const MAX_CPU_NUMBER = 1 << 16;
const TASKSET_TIMEOUT_MS = 5000;
const PIN_ATTEMPTS = 3;

function parseCpuNumber(text: string, whole: string): number {
  if (!/^\d+$/.test(text)) throw new AffinityError(`bad CPU list "${whole}": "${text}"`);
  const cpu = Number(text);
  if (cpu >= MAX_CPU_NUMBER) throw new AffinityError(`bad CPU list "${whole}": ${cpu} too large`);
  return cpu;
}

/** "0-3,8,10-11" → [0,1,2,3,8,10,11] (sorted, unique). Also accepts "0-7:2" strides. */
export function parseCpuList(text: string): number[] {
  const whole = text.trim();
  if (whole === '') throw new AffinityError('empty CPU list');
  const cpus = new Set<number>();
  for (const rawPart of whole.split(',')) {
    const part = rawPart.trim();
    const [range = '', strideText] = part.split(':');
    const stride = strideText === undefined ? 1 : parseCpuNumber(strideText, whole);
    if (stride === 0) throw new AffinityError(`bad CPU list "${whole}": zero stride`);
    const bounds = range.split('-');
    if (bounds.length > 2) throw new AffinityError(`bad CPU list "${whole}": "${part}"`);
    const first = parseCpuNumber(bounds[0] ?? '', whole);
    const last = bounds[1] === undefined ? first : parseCpuNumber(bounds[1], whole);
    if (last < first) throw new AffinityError(`bad CPU list "${whole}": reversed range "${part}"`);
    for (let cpu = first; cpu <= last; cpu += stride) cpus.add(cpu);
  }
  return [...cpus].sort((a, b) => a - b);
}

function statusField(statusText: string, field: string, source: string): string {
  const match = new RegExp(`^${field}:\\s*(.*)$`, 'm').exec(statusText);
  if (match?.[1] === undefined) throw new AffinityError(`${source} has no ${field} line`);
  return match[1];
}

function readStatus(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new AffinityError(`cannot read ${path}: ${(error as Error).message}`, error);
  }
}

/** The CPUs this process (or `pid`) may run on: Cpus_allowed_list from /proc. */
export function readAllowedCpus(pid: number | 'self' = 'self'): number[] {
  const path = `/proc/${pid}/status`;
  return parseCpuList(statusField(readStatus(path), 'Cpus_allowed_list', path));
}

/** The workerIndex-th CPU of the allowed set, wrapping when there are more workers. */
export function cpuForWorker(allowedCpus: readonly number[], workerIndex: number): number {
  if (allowedCpus.length === 0) throw new AffinityError('no CPUs allowed');
  if (!Number.isInteger(workerIndex) || workerIndex < 0) {
    throw new AffinityError(`bad worker index ${workerIndex}`);
  }
  return allowedCpus[workerIndex % allowedCpus.length] as number;
}

function runTaskset(pid: number, cpu: number): Promise<void> {
  const args = ['-a', '-p', '-c', String(cpu), String(pid)];
  return new Promise((resolve, reject) => {
    execFile('taskset', args, { timeout: TASKSET_TIMEOUT_MS }, (error, _stdout, stderr) => {
      if (error === null) {
        resolve();
        return;
      }
      const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
      const detail = missing
        ? 'taskset not found (install util-linux, or disable CPU pinning)'
        : `taskset ${args.join(' ')} failed: ${String(stderr).trim() || error.message}`;
      reject(new AffinityError(`cannot pin pid ${pid} to CPU ${cpu}: ${detail}`, error));
    });
  });
}

/** Threads of `pid` whose mask is not exactly [cpu]; throws if the process is gone. */
function unpinnedThreads(pid: number, cpu: number): number[] {
  let affinities: Map<number, number[]>;
  try {
    affinities = readThreadAffinities(pid);
  } catch (error) {
    throw new AffinityError(`cannot pin pid ${pid}: no such process`, error);
  }
  if (affinities.size === 0) throw new AffinityError(`cannot pin pid ${pid}: no such process`);
  return [...affinities]
    .filter(([, cpus]) => cpus.length !== 1 || cpus[0] !== cpu)
    .map(([tid]) => tid);
}

/**
 * Pin every thread of `pid` to `cpu` with `taskset -a -p -c <cpu> <pid>`, then check
 * /proc. The check matters: `taskset -a` exits 0 for a pid that does not exist, and a
 * thread started by a not-yet-pinned thread while taskset walks the list can be missed,
 * so a mismatch is retried a few times before giving up.
 */
export async function pinProcess(pid: number, cpu: number): Promise<void> {
  if (!Number.isInteger(pid) || pid <= 0) throw new AffinityError(`bad pid ${pid}`);
  if (!Number.isInteger(cpu) || cpu < 0) throw new AffinityError(`bad CPU ${cpu}`);
  let unpinned: number[] = [];
  for (let attempt = 0; attempt < PIN_ATTEMPTS; attempt++) {
    await runTaskset(pid, cpu);
    unpinned = unpinnedThreads(pid, cpu);
    if (unpinned.length === 0) return;
  }
  throw new AffinityError(
    `cannot pin pid ${pid} to CPU ${cpu}: threads ${unpinned.join(', ')} kept another mask`,
  );
}

/** Cpus_allowed_list of every thread of `pid`, keyed by thread id (tests, diagnostics). */
export function readThreadAffinities(pid: number): Map<number, number[]> {
  const taskDir = `/proc/${pid}/task`;
  let tids: string[];
  try {
    tids = readdirSync(taskDir);
  } catch (error) {
    throw new AffinityError(`cannot list ${taskDir}: ${(error as Error).message}`, error);
  }
  const affinities = new Map<number, number[]>();
  for (const tid of tids) {
    const path = `${taskDir}/${tid}/status`;
    let statusText: string;
    try {
      statusText = readFileSync(path, 'utf8');
    } catch {
      continue; // the thread exited between readdir and read
    }
    affinities.set(Number(tid), parseCpuList(statusField(statusText, 'Cpus_allowed_list', path)));
  }
  return affinities;
}
