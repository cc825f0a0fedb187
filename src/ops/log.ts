/**
 * pino setup. JSON lines on stdout (or `log-filename`); `quiet` raises the level to
 * errors only, as Hitch's `quiet` silences everything but errors.
 */
import { type Logger, pino } from 'pino';
import type { LogLevelName } from '../config/model.js';

export type { Logger } from 'pino';

export interface LogOptions {
  readonly level: LogLevelName;
  readonly quiet: boolean;
  /** Append to this file instead of stdout. */
  readonly filename?: string | undefined;
  /** Bound into every line, e.g. `{ worker: 2 }`. */
  readonly bindings?: Record<string, unknown>;
}

export function createLogger(options: LogOptions): Logger {
  const level = options.quiet && options.level !== 'silent' ? 'error' : options.level;
  const destination = options.filename
    ? pino.destination({ dest: options.filename, append: true, sync: false, mkdir: true })
    : pino.destination({ dest: 1, sync: false });
  const logger = pino({ level, base: { pid: process.pid, ...options.bindings } }, destination);
  return logger;
}
