/**
 * How many more file descriptors this process may open: the soft RLIMIT_NOFILE from
 * /proc/self/limits minus the entries of /proc/self/fd. Used before accepting again after
 * fd exhaustion: accept(2) failing with EMFILE makes libuv close every connection queued
 * on that socket (its "EMFILE trick", to avoid a busy loop), so resuming too early would
 * drop the clients that waited. Linux only; elsewhere it reports no limit.
 */
import { readdirSync, readFileSync } from 'node:fs';

function isFdExhaustion(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'EMFILE' || code === 'ENFILE';
}

/** The soft RLIMIT_NOFILE; throws EMFILE/ENFILE when reading it needs a descriptor we lack. */
function softLimit(): number {
  let text: string;
  try {
    text = readFileSync('/proc/self/limits', 'utf8');
  } catch (error) {
    if (isFdExhaustion(error)) throw error;
    return Number.POSITIVE_INFINITY; // no /proc: not Linux
  }
  const line = text.split('\n').find((candidate) => candidate.startsWith('Max open files'));
  const soft = line?.split(/\s{2,}/)[1];
  return soft === undefined || soft === 'unlimited' ? Number.POSITIVE_INFINITY : Number(soft);
}

/** Free descriptors now; 0 when even looking needs a descriptor we do not have. */
export function fdHeadroom(): number {
  try {
    const limit = softLimit();
    if (!Number.isFinite(limit)) return Number.POSITIVE_INFINITY;
    // readdir holds one descriptor of its own while it runs, counted in the listing.
    return Math.max(0, limit - readdirSync('/proc/self/fd').length);
  } catch (error) {
    if (isFdExhaustion(error)) return 0;
    throw error;
  }
}
