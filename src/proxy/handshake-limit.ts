/**
 * max-handshakes: how many accepted sockets a worker lets be "opening" (reading a PROXY
 * header or the ClientHello, or handshaking) at once. At the limit the worker stops
 * accepting; new clients wait in the kernel's listen backlog, nothing is refused, and
 * the worker's CPU goes to the handshakes it has and to its established connections.
 *
 * Why wait rather than shed (accept and close at once): a legitimate burst (every
 * tracker peer reconnecting after a restart) then queues and is served in order instead
 * of being refused and retried in a herd, as with HAProxy's maxconn and nginx's
 * worker_connections. It is possible because a worker's listening socket outlives the
 * worker's copy of it: the primary holds one (cluster/listen-sockets.ts), so closing ours
 * keeps the socket, and its queue, alive.
 *
 * What a pause costs: closing our copy is a close(2); resuming asks the primary for a new
 * copy over the cluster IPC channel (a message each way, the descriptor passed with
 * SCM_RIGHTS) and listen(2)s on it, about a millisecond. So a pause lasts until the count
 * is down to three quarters of the limit, and at least MIN_PAUSE_MS: a flood that keeps
 * the count at the limit toggles accepting at most 1000 / MIN_PAUSE_MS times a second per
 * worker, not once per handshake.
 *
 * Per worker, not shared: the kernel spreads connections over the workers' sockets
 * (SO_REUSEPORT), each worker's event loop is what a flood starves, and a shared count
 * would need a round trip to the primary per accept.
 */
import { type CodeLogger, logCode } from '../errors.js';
import type { ProxyObserver } from './events.js';

/** A pause lasts at least this long (bounds pause/resume cycles under a steady flood). */
export const MIN_PAUSE_MS = 20;
/** The pause line is written at most this often; it carries the counts since the last. */
const PAUSE_LOG_INTERVAL_MS = 10_000;

export interface AcceptGate {
  /** Stop accepting on every frontend (clients queue in the backlog). */
  pause(): void;
  /** Accept again, unless something else (fd exhaustion) still holds accepting off. */
  resume(): void;
}

function resumeIfDue(limit: HandshakeLimit): void {
  limit.resumeIfDue();
}

export class HandshakeLimit {
  /** Resume at or below this many (three quarters of the limit). */
  readonly lowWater: number;
  /** performance.now() when the pause under way began; undefined: accepting. */
  private pausedAt: number | undefined;
  private resumeTimer: NodeJS.Timeout | undefined;
  private lastLogAt = Number.NEGATIVE_INFINITY;
  private pausesSinceLog = 0;

  constructor(
    readonly max: number,
    private readonly inProgress: () => number,
    private readonly gate: AcceptGate,
    private readonly observer: ProxyObserver,
    private readonly logger: CodeLogger,
  ) {
    this.lowWater = Math.floor((max * 3) / 4);
  }

  get paused(): boolean {
    return this.pausedAt !== undefined;
  }

  /** A socket was accepted: pause at the limit. */
  opened(): void {
    if (this.pausedAt !== undefined || this.inProgress() < this.max) return;
    this.pausedAt = performance.now();
    this.gate.pause();
    this.observer.acceptPaused('max_handshakes');
    this.pausesSinceLog += 1;
    if (this.pausedAt - this.lastLogAt >= PAUSE_LOG_INTERVAL_MS) {
      logCode(
        this.logger,
        'UNHITCH_ACCEPT_PAUSED',
        {
          reason: 'max_handshakes',
          maxHandshakes: this.max,
          pauses: this.pausesSinceLog,
          intervalSec: Number.isFinite(this.lastLogAt)
            ? Math.round((this.pausedAt - this.lastLogAt) / 100) / 10
            : undefined,
        },
        'max-handshakes reached: accepting paused, new clients wait in the listen backlog',
      );
      this.lastLogAt = this.pausedAt;
      this.pausesSinceLog = 0;
    }
  }

  /** A socket's handshake ended (or it closed): resume once below the low-water mark. */
  settled(): void {
    if (this.pausedAt === undefined || this.resumeTimer !== undefined) return;
    if (this.inProgress() > this.lowWater) return;
    const wait = this.pausedAt + MIN_PAUSE_MS - performance.now();
    if (wait > 0) this.resumeTimer = setTimeout(resumeIfDue, wait, this).unref();
    else this.resume();
  }

  resumeIfDue(): void {
    this.resumeTimer = undefined;
    if (this.pausedAt !== undefined && this.inProgress() <= this.lowWater) this.resume();
  }

  /** Stops for good (drain, destroy): no resume may follow. */
  stop(): void {
    clearTimeout(this.resumeTimer);
    this.resumeTimer = undefined;
    this.pausedAt = undefined;
  }

  private resume(): void {
    const pausedAt = this.pausedAt as number;
    this.pausedAt = undefined;
    this.observer.acceptResumed('max_handshakes', performance.now() - pausedAt);
    this.gate.resume();
  }
}
