/**
 * How many proxied connections the open-files limit allows. Without privileges a child cannot
 * be given more than this process's hard RLIMIT_NOFILE, and a proxy holds two descriptors per
 * proxied connection (the client's and the backend's).
 */
import { execFileSync } from 'node:child_process';

/** The hard RLIMIT_NOFILE of this process (4096 when it cannot be read). */
export function hardOpenFilesLimit(): number {
  try {
    const text = execFileSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim();
    if (text === 'unlimited') return 1_048_576;
    const value = Number(text);
    return Number.isFinite(value) && value > 0 ? value : 4096;
  } catch {
    return 4096;
  }
}

/** Descriptors per proxied connection: the client's socket and the backend's. */
export const DESCRIPTORS_PER_CONNECTION = 2;

/** The most connections a proxy with `limit` open files holds, `spare` kept for the rest. */
export function maxProxiedConnections(limit: number, spare: number): number {
  return Math.max(1, Math.floor((limit - spare) / DESCRIPTORS_PER_CONNECTION));
}
