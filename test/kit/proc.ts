/**
 * /proc readings for a process TREE: Hitch and the unhitch cluster are several processes,
 * so a proxy's cost is its root PID plus every descendant.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

let cachedClockTicks: number | null = null;

/** Kernel clock ticks per second (getconf CLK_TCK), 100 on Linux unless told otherwise. */
export function clockTicksPerSecond(): number {
  if (cachedClockTicks === null) {
    try {
      cachedClockTicks =
        Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      cachedClockTicks = 100;
    }
  }
  return cachedClockTicks;
}

export interface ProcStat {
  readonly pid: number;
  readonly ppid: number;
  /** utime + stime, in clock ticks. */
  readonly cpuTicks: number;
}

/**
 * Parses /proc/PID/stat. The command name (field 2) may contain spaces and parentheses,
 * so fields are counted from the LAST ')'.
 */
export function parseProcStat(text: string): ProcStat {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  const pid = Number(text.slice(0, open).trim());
  const rest = text.slice(close + 2).split(' ');
  // rest[0] is field 3 (state); ppid is field 4, utime field 14, stime field 15.
  const ppid = Number(rest[1]);
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return { pid, ppid, cpuTicks: utime + stime };
}

function readStat(pid: number): ProcStat | null {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return null; // exited between listing and reading
  }
}

function allStats(): ProcStat[] {
  const stats: ProcStat[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (stat) stats.push(stat);
  }
  return stats;
}

/** PIDs of `rootPid` and all its descendants, root first. */
export function processTree(rootPid: number, stats: readonly ProcStat[] = allStats()): number[] {
  const children = new Map<number, number[]>();
  for (const stat of stats) {
    const siblings = children.get(stat.ppid) ?? [];
    siblings.push(stat.pid);
    children.set(stat.ppid, siblings);
  }
  const tree: number[] = [];
  const pending = [rootPid];
  while (pending.length > 0 && tree.length < 10_000) {
    const pid = pending.shift() as number;
    if (!stats.some((s) => s.pid === pid)) continue;
    tree.push(pid);
    pending.push(...(children.get(pid) ?? []));
  }
  return tree;
}

/** user+system CPU of the whole tree, in microseconds (live processes only). */
export function treeCpuMicros(rootPid: number): number {
  const stats = allStats();
  const tree = new Set(processTree(rootPid, stats));
  let ticks = 0;
  for (const stat of stats) if (tree.has(stat.pid)) ticks += stat.cpuTicks;
  return (ticks * 1_000_000) / clockTicksPerSecond();
}

/** VmRSS line of /proc/PID/status, in KiB (0 for kernel threads or exited processes). */
export function parseVmRssKiB(statusText: string): number {
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(statusText);
  return match ? Number(match[1]) : 0;
}

export interface ProcessSample {
  readonly rssBytes: number;
  readonly fds: number;
}

/** Resident memory and open fd count of one process (a leak shows in either). */
export function sampleProcess(pid: number): ProcessSample {
  const rssKiB = parseVmRssKiB(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (rssKiB === 0) throw new Error(`no VmRSS for pid ${pid}`);
  return { rssBytes: rssKiB * 1024, fds: readdirSync(`/proc/${pid}/fd`).length };
}

/** Resident memory of the whole tree, in KiB. */
export function treeRssKiB(rootPid: number): number {
  let total = 0;
  for (const pid of processTree(rootPid)) {
    try {
      total += parseVmRssKiB(readFileSync(`/proc/${pid}/status`, 'utf8'));
    } catch {
      // exited meanwhile
    }
  }
  return total;
}

/**
 * Busy time of one CPU from a /proc/stat text (user+nice+system+irq+softirq+steal), in µs.
 * Compared with the proxy tree's own CPU it shows how much OTHER work ran on the proxy's CPU
 * during a window: other sessions' tests on a shared machine make results noisy.
 */
export function parseCpuBusyMicros(procStatText: string, cpuIndex: number): number | null {
  const line = procStatText.split('\n').find((l) => l.startsWith(`cpu${cpuIndex} `));
  if (!line) return null;
  const fields = line.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields;
  return ((user + nice + system + irq + softirq + steal) * 1_000_000) / clockTicksPerSecond();
}

export function cpuBusyMicros(cpuIndex: number): number | null {
  try {
    return parseCpuBusyMicros(readFileSync('/proc/stat', 'utf8'), cpuIndex);
  } catch {
    return null;
  }
}
