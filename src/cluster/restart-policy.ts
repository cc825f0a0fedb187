/**
 * When a worker slot is restarted: soon after a one-off crash, later and later while it
 * keeps dying young (a crash loop, or a fork that keeps failing), never later than a cap.
 * Pure, so the numbers are unit-tested; the supervisor applies them.
 */

/** A worker that dies sooner than this after its start counts as crash-looping. */
export const STABLE_AFTER_MS = 5_000;
export const RESTART_DELAY_MIN_MS = 100;
export const RESTART_DELAY_MAX_MS = 30_000;
/**
 * From this restart delay on, a dead slot's listening sockets are closed until it is
 * back: clients queued there would wait the whole delay for a worker that may not come.
 */
export const RELEASE_SOCKET_AFTER_MS = 1_000;

/**
 * The delay before restarting a slot whose worker lived `livedMs` (0 for one that could
 * not be forked). `previousMs` is the delay this slot's last restart used (undefined: its
 * first). A stable life resets the back-off; each early death doubles it, up to the cap.
 */
export function restartDelayMs(previousMs: number | undefined, livedMs: number): number {
  if (livedMs >= STABLE_AFTER_MS) return RESTART_DELAY_MIN_MS;
  return Math.min((previousMs ?? RESTART_DELAY_MIN_MS) * 2, RESTART_DELAY_MAX_MS);
}
