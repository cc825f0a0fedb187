/**
 * The per-connection failure lines ("handshake failed", "connection failed"), rate-limited
 * per reason. On the open internet every scanner, plaintext probe and health check ends in
 * one of these: logged one by one, 145,000 probes wrote 85 MB. Here, per reason, the first
 * few lines of an interval are written and the rest are counted, then said in one line:
 * `suppressed 14,203 not_tls in the last 10 s`. The Prometheus counters are fed before
 * this (ProxyObserver), so they stay exact; at `log-level = debug` every line is written
 * as it was, error stack and all.
 *
 * Below debug a line carries the error's code and OpenSSL's reason only: an OpenSSL
 * error's message and stack are its whole error queue with source paths (most of a
 * 590-byte line), and say nothing the code and reason do not.
 */
import { type Logger, pino } from 'pino';

/** Lines written per reason per interval before the rest are only counted. */
export const FAILURE_LINES_PER_INTERVAL = 10;
export const FAILURE_LOG_INTERVAL_MS = 10_000;

/** What a failure line says: its reason (the key of the limit) and whatever else. */
export interface FailureFields {
  readonly reason: string;
  readonly err?: unknown;
  readonly [field: string]: unknown;
}

type FailureLevel = 'info' | 'warn';

export interface FailureLog {
  info(fields: FailureFields, message: string): void;
  warn(fields: FailureFields, message: string): void;
}

interface ReasonWindow {
  written: number;
  suppressed: number;
  /** The highest level suppressed: the summary is written at it. */
  level: FailureLevel;
}

/** Lines counted but not written since the process started (the log-lines metric). */
let suppressedTotal = 0;

export function suppressedFailureLines(): number {
  return suppressedTotal;
}

export interface FailureLimits {
  readonly linesPerInterval: number;
  readonly intervalMs: number;
}

/**
 * Limiters with an interval under way: a process that exits (a drained worker) still says
 * what it suppressed last. pino's destinations flush on 'exit' too, in an order of their
 * own, so flush() writes its summaries out synchronously itself.
 */
const openIntervals = new Set<RateLimitedFailureLog>();
process.on('exit', () => {
  for (const limiter of openIntervals) limiter.flush();
});

export class RateLimitedFailureLog implements FailureLog {
  private readonly windows = new Map<string, ReasonWindow>();
  private windowTimer: NodeJS.Timeout | undefined;
  private windowStartedAt = 0;
  /** `logger` with `err` written as given: briefError's fields, not pino's type and stack. */
  private readonly brief: Logger;

  constructor(
    private readonly logger: Logger,
    private readonly limits: FailureLimits = {
      linesPerInterval: FAILURE_LINES_PER_INTERVAL,
      intervalMs: FAILURE_LOG_INTERVAL_MS,
    },
  ) {
    this.brief = logger.child({}, { serializers: { err: (err: unknown) => err } });
  }

  info(fields: FailureFields, message: string): void {
    this.write('info', fields, message);
  }

  warn(fields: FailureFields, message: string): void {
    this.write('warn', fields, message);
  }

  /** Writes the summaries of the interval under way now, synchronously (process exit). */
  flush(): void {
    if (this.windowTimer === undefined) return;
    clearTimeout(this.windowTimer);
    this.endInterval(performance.now() - this.windowStartedAt);
    const stream = (this.logger as unknown as Record<symbol, unknown>)[pino.symbols.streamSym];
    (stream as { flushSync?: () => void } | undefined)?.flushSync?.();
  }

  private write(level: FailureLevel, fields: FailureFields, message: string): void {
    const { logger } = this;
    if (!logger.isLevelEnabled(level)) return;
    if (logger.isLevelEnabled('debug')) {
      logger[level](fields, message);
      return;
    }
    let window = this.windows.get(fields.reason);
    if (window === undefined) {
      window = { written: 0, suppressed: 0, level: 'info' };
      this.windows.set(fields.reason, window);
    }
    // The interval starts with the first line after a quiet one, so "in the last 10 s"
    // is what the summary says it is.
    if (this.windowTimer === undefined) {
      this.windowStartedAt = performance.now();
      this.windowTimer = setTimeout(
        () => this.endInterval(this.limits.intervalMs),
        this.limits.intervalMs,
      ).unref();
      openIntervals.add(this);
    }
    if (window.written < this.limits.linesPerInterval) {
      window.written += 1;
      this.brief[level](
        fields.err === undefined ? fields : { ...fields, err: briefError(fields.err) },
        message,
      );
      return;
    }
    window.suppressed += 1;
    suppressedTotal += 1;
    if (level === 'warn') window.level = 'warn';
  }

  /** `elapsedMs`: the interval's length, shorter when the process exits during it. */
  private endInterval(elapsedMs: number): void {
    this.windowTimer = undefined;
    openIntervals.delete(this);
    const seconds = Math.round(elapsedMs / 100) / 10;
    for (const [reason, window] of this.windows) {
      if (window.suppressed === 0) continue;
      this.logger[window.level](
        { reason, suppressed: window.suppressed, intervalSec: seconds },
        `suppressed ${window.suppressed.toLocaleString('en-US')} ${reason} in the last ${seconds} s`,
      );
    }
    this.windows.clear();
  }
}

const failureLogs = new WeakMap<Logger, RateLimitedFailureLog>();

/**
 * The one limiter of `logger`'s per-connection failure lines:
 * `failureLog(logger).info({ reason, client, err }, 'handshake failed')`.
 */
export function failureLog(logger: Logger): FailureLog {
  let log = failureLogs.get(logger);
  if (log === undefined) {
    log = new RateLimitedFailureLog(logger);
    failureLogs.set(logger, log);
  }
  return log;
}

/**
 * An error as a failure line names it below debug: its code, OpenSSL's reason (or the
 * message of any other error), and the syscall of a socket error. No stack.
 */
export function briefError(error: unknown): Record<string, unknown> {
  if (!(error instanceof Error)) return { message: String(error) };
  const { code, reason, syscall } = error as Error & {
    code?: unknown;
    reason?: unknown;
    syscall?: unknown;
  };
  return {
    ...(code === undefined ? {} : { code }),
    message: typeof reason === 'string' ? reason : error.message,
    ...(syscall === undefined ? {} : { syscall }),
  };
}
