/**
 * The proxy's CPU set (--proxy-cpu, a taskset list) and how much of it other processes took
 * during a measured window: the figure reliability.ts judges. Over a set of N CPUs the
 * share is of the set's capacity (N CPUs × the window), so the 10 % rule means the same for
 * one CPU or several: other processes took more than a tenth of what the proxy could use.
 */
import { readFileSync } from 'node:fs';
import { parseCpuBusyMicros } from '../../test/kit/proc.js';

/** An upper bound on a CPU index, so a typo ("0-99999") cannot make a huge list. */
const MAX_CPU_INDEX = 4095;

/**
 * The CPUs of a taskset list ("1", "0,2", "0-3", "0-7:2", or a mix joined by commas);
 * null when the list is not one (then other load goes unmeasured, shown as "–").
 */
export function parseCpuList(list: string): number[] | null {
  const cpus = new Set<number>();
  for (const part of list.split(',')) {
    const match = /^(\d+)(?:-(\d+)(?::(\d+))?)?$/.exec(part.trim());
    if (match === null) return null;
    const first = Number(match[1]);
    const last = match[2] === undefined ? first : Number(match[2]);
    const stride = match[3] === undefined ? 1 : Number(match[3]);
    if (last < first || stride < 1 || last > MAX_CPU_INDEX) return null;
    for (let cpu = first; cpu <= last; cpu += stride) cpus.add(cpu);
  }
  return [...cpus].sort((a, b) => a - b);
}

/** Busy time summed over `cpus` from a /proc/stat text, µs; null when one is missing. */
export function parseCpusBusyMicros(procStatText: string, cpus: readonly number[]): number | null {
  let total = 0;
  for (const cpu of cpus) {
    const busy = parseCpuBusyMicros(procStatText, cpu);
    if (busy === null) return null;
    total += busy;
  }
  return total;
}

/**
 * Share of the set's capacity over the window that was busy with anything but the proxy
 * tree, %: (busy − proxy) / (window × CPUs), never below 0 (the counters are sampled a
 * little apart from the proxy's).
 */
export function otherLoadPercent(
  busyMicros: number,
  proxyCpuMicros: number | null,
  windowMicros: number,
  cpuCount: number,
): number | null {
  if (windowMicros <= 0 || cpuCount <= 0) return null;
  return Math.max(0, ((busyMicros - (proxyCpuMicros ?? 0)) / (windowMicros * cpuCount)) * 100);
}

/** The busy counters of the proxy's CPU set around one measured window. */
export class OtherLoadWindow {
  private busyAtStart: number | null = null;
  private startedAt = 0;
  private busyMicros: number | null = null;
  private windowMicros = 0;

  private readonly readProcStat: () => string;
  private readonly nowMs: () => number;

  /**
   * `cpus`: the proxy's set; null when it is not known (not pinned, or not a list). The
   * sources are /proc/stat and performance.now() unless a test gives its own.
   */
  constructor(
    private readonly cpus: readonly number[] | null,
    sources: { readonly readProcStat?: () => string; readonly nowMs?: () => number } = {},
  ) {
    this.readProcStat = sources.readProcStat ?? (() => readFileSync('/proc/stat', 'utf8'));
    this.nowMs = sources.nowMs ?? (() => performance.now());
  }

  start(): void {
    this.busyAtStart = this.busy();
    this.startedAt = this.nowMs();
  }

  end(): void {
    const busyNow = this.busy();
    this.windowMicros = (this.nowMs() - this.startedAt) * 1000;
    this.busyMicros =
      busyNow !== null && this.busyAtStart !== null ? busyNow - this.busyAtStart : null;
  }

  /** Other processes' share of the set between start() and end(), %; null if unmeasured. */
  percent(proxyCpuMicros: number | null): number | null {
    if (this.cpus === null || this.busyMicros === null) return null;
    return otherLoadPercent(this.busyMicros, proxyCpuMicros, this.windowMicros, this.cpus.length);
  }

  private busy(): number | null {
    if (this.cpus === null || this.cpus.length === 0) return null;
    try {
      return parseCpusBusyMicros(this.readProcStat(), this.cpus);
    } catch {
      return null;
    }
  }
}
