/**
 * The reconnect storm's plan and verdicts, kept apart from its I/O so they can be unit-tested:
 * the sizes to run, the proxies' order in each round, and which side held a storm back.
 */

/** A side is the bottleneck when its CPU was busy at least this share of the storm. */
export const BOTTLENECK_BUSY_PERCENT = 85;

/** The sizes asked for (`max` → maxConnections), each at most maxConnections, deduplicated. */
export function stormSizes(requested: readonly string[], maxConnections: number): number[] {
  const sizes = requested.map((text) => {
    if (text === 'max') return maxConnections;
    const value = Number(text);
    if (!(Number.isInteger(value) && value > 0)) {
      throw Object.assign(new Error(`--connections: ${text} is not a count or max`), {
        code: 'BENCH_BAD_ARGUMENT',
      });
    }
    return Math.min(value, maxConnections);
  });
  return [...new Set(sizes)].sort((a, b) => a - b);
}

/** `list` rotated left by `by`: round r starts with another proxy, so none always goes first. */
export function rotated<T>(list: readonly T[], by: number): T[] {
  if (list.length === 0) return [];
  const shift = ((by % list.length) + list.length) % list.length;
  return [...list.slice(shift), ...list.slice(0, shift)];
}

/** Which side held the storm back: the proxy's CPU, the load CPU (clients, backend), or neither. */
export function bottleneck(proxyBusy: number | null, loadBusy: number | null): string {
  if (proxyBusy !== null && proxyBusy >= BOTTLENECK_BUSY_PERCENT) return 'proxy';
  if (loadBusy !== null && loadBusy >= BOTTLENECK_BUSY_PERCENT) return 'client side';
  return 'neither (waits)';
}
