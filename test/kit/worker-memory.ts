/**
 * A worker's memory split in two, for leak checks that must not mistake V8 sizing its heap
 * for a leak: RSS (from /proc) and the V8 heap's committed size (from the worker's
 * `nodejs_heap_size_total_bytes` on unhitch's metrics endpoint, which must be enabled).
 *
 * Why: under load the worker's RSS climbs by some 30–40 MiB while V8's old generation grows
 * to the limit of its first mark-compact, then stays flat; on a quiet machine that happens
 * within a test's warm-up, on a loaded one (fewer connections per second) inside the
 * measured window (issue 23's soak flake: 87 → 118 MiB). After a mark-compact V8 keeps the
 * freed pages resident, so RSS follows the heap's high-water, not its current size. The
 * part of RSS beyond that high-water is what OpenSSL, node and malloc hold: the memory a
 * heap snapshot cannot see, and what an RSS criterion is for. JS leaks are the heap
 * census's job (heap-census.ts).
 */
import { sampleProcess } from './proc.js';
import { scrapeMetrics } from './scrape.js';

export interface WorkerMemorySample {
  /** Since the caller's start. */
  readonly atMs: number;
  readonly rssBytes: number;
  readonly fds: number;
  /** V8's committed heap (all spaces) at that moment. */
  readonly heapCommittedBytes: number;
}

const HEAP_TOTAL = 'unhitch_nodejs_heap_size_total_bytes{';

/** V8's committed heap, summed over the workers, from metrics on 127.0.0.1:`metricsPort`. */
export async function workersHeapCommittedBytes(metricsPort: number): Promise<number> {
  const values = [...(await scrapeMetrics(metricsPort))]
    .filter(([series]) => series.startsWith(HEAP_TOTAL))
    .map(([, value]) => value);
  if (values.length === 0) throw new Error('no nodejs_heap_size_total_bytes on the metrics page');
  return values.reduce((sum, value) => sum + value, 0);
}

/** One sample of a one-worker unhitch whose metrics listen on 127.0.0.1:`metricsPort`. */
export async function sampleWorkerMemory(
  workerPid: number,
  metricsPort: number,
  atMs: number,
): Promise<WorkerMemorySample> {
  const heapCommittedBytes = await workersHeapCommittedBytes(metricsPort);
  return { atMs, ...sampleProcess(workerPid), heapCommittedBytes };
}

/**
 * Per sample, RSS minus the highest V8 heap committed up to it: the native share, which
 * stays flat while V8 grows its heap and keeps the pages of a collected one.
 */
export function rssBeyondHeap(
  samples: readonly WorkerMemorySample[],
): Array<{ atMs: number; bytes: number }> {
  let heapHighWater = 0;
  return samples.map((sample) => {
    heapHighWater = Math.max(heapHighWater, sample.heapCommittedBytes);
    return { atMs: sample.atMs, bytes: sample.rssBytes - heapHighWater };
  });
}

/**
 * How much higher native memory (RSS beyond the heap's high-water) may peak in the last
 * third of a run than in its first: a few KiB kept per connection over thousands of
 * connections goes past it; malloc's and OpenSSL's caches settling do not.
 */
export const FLAT_NATIVE_BYTES = 10 * 1024 * 1024;

/** A sample with the units of work (sessions, connections) done when it was taken. */
export type WorkedSample = WorkerMemorySample & { readonly done: number };

/**
 * Native memory per sample, and its peaks over the first and last thirds of the `total`
 * units of work that follow the first `warmup`: windows counted in work, not seconds, so
 * a loaded machine judges the same work, only slower. -Infinity: no sample in that third.
 */
export function nativePeaksByThirds(
  samples: readonly WorkedSample[],
  warmup: number,
  total: number,
): { native: Array<{ atMs: number; bytes: number; done: number }>; first: number; last: number } {
  const native = rssBeyondHeap(samples).map((sample, i) => ({
    ...sample,
    done: samples[i]?.done ?? 0,
  }));
  const third = total / 3;
  const peak = (from: number, to: number): number =>
    Math.max(
      ...native.filter((s) => s.done >= warmup + from && s.done < warmup + to).map((s) => s.bytes),
    );
  return { native, first: peak(0, third), last: peak(2 * third, Number.POSITIVE_INFINITY) };
}
