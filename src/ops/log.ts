/**
 * pino setup. JSON lines on stdout (or `log-filename`); `quiet` raises the level to
 * errors only, as Hitch's `quiet` silences everything but errors.
 *
 * Lines are written asynchronously; pino's destination writes what is still buffered
 * synchronously on process 'exit', so a worker that ends itself keeps its last lines.
 * That flush needs an open descriptor: the log file is opened here, synchronously, and
 * not by the destination in the background (a worker failing in its first milliseconds
 * lost its last line, and died of "sonic boom is not ready yet" on exit).
 */
import { mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { type Logger, pino } from 'pino';
import type { LogLevelName } from '../config/model.js';
import { UnhitchError } from '../errors.js';

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
  const fd = options.filename === undefined ? 1 : openLogFile(options.filename);
  const destination = pino.destination({ dest: fd, sync: false });
  // pino's standard `err` serializer (type, message, stack, code, cause) applies to the
  // `err` key: every error is logged there as the Error itself, never a copy of fields.
  return pino({ level, base: { pid: process.pid, ...options.bindings } }, destination);
}

function openLogFile(filename: string): number {
  try {
    mkdirSync(dirname(filename), { recursive: true });
    return openSync(filename, 'a');
  } catch (error) {
    throw new UnhitchError(
      'UNHITCH_LOG_FILE',
      `cannot open log file ${filename}: ${(error as Error).message}`,
      { cause: error },
    );
  }
}
