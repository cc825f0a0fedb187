/**
 * V8 heap flags the primary gives its workers.
 *
 * V8 13 (Node 24) lets the young generation grow to four times what V8 12 (Node 22) and
 * V8 11 (Node 20) allowed: `--scavenger-max-new-space-capacity-mb` went from 8 to 32, and
 * node builds without pointer compression double it. A worker that churns short TLS
 * connections allocates fast enough to reach that cap, so on Node 24 each worker's new
 * space grows from 8 to 128 MiB and its RSS by about 100 MiB before it levels off (measured
 * with process.memoryUsage() and v8.getHeapSpaceStatistics() in a churn run; see
 * bench/PERF-STEPS.md). The handshake CPU per connection did not change with the smaller
 * young generation (the work is OpenSSL's, and a proxy's garbage dies young), while the
 * memory is paid once per CPU. So workers run with the semi-space cap Node 20 and 22 had.
 */

/** 16 MiB semi-spaces: new space capped at 32 MiB, as on Node 20 and 22. */
export const WORKER_MAX_SEMI_SPACE_MIB = 16;

/**
 * Flags that size the young generation themselves: if the operator passed any of them
 * (command line or NODE_OPTIONS), theirs win and we add nothing. `--max-heap-size` is in
 * the list because V8 refuses it together with both of the other two size flags.
 */
const YOUNG_GENERATION_FLAGS = [
  'max-semi-space-size',
  'min-semi-space-size',
  'semi-space-growth-factor',
  'scavenger-max-new-space-capacity-mb',
  'max-heap-size',
];

function namesYoungGenerationFlag(argument: string): boolean {
  // V8 accepts both spellings (--max-semi-space-size, --max_semi_space_size).
  const name = argument.replace(/^--/, '').split('=')[0]?.replaceAll('_', '-') ?? '';
  return YOUNG_GENERATION_FLAGS.includes(name);
}

/**
 * The execArgv for workers: the primary's own execArgv plus the semi-space cap, unless the
 * operator already sized the young generation in `execArgv` or `nodeOptions`.
 */
export function workerExecArgv(execArgv: readonly string[], nodeOptions = ''): string[] {
  const given = [...execArgv, ...nodeOptions.split(/\s+/).filter(Boolean)];
  if (given.some(namesYoungGenerationFlag)) return [...execArgv];
  return [...execArgv, `--max-semi-space-size=${WORKER_MAX_SEMI_SPACE_MIB}`];
}
