/**
 * pino setup. JSON lines on stdout (or `log-filename`); `quiet` raises the level to
 * errors only, as Hitch's `quiet` silences everything but errors; `syslog` sends the same
 * lines to the local syslog as well (Hitch: "in addition to stderr/stdout").
 *
 * Lines are written asynchronously; pino's destination writes what is still buffered
 * synchronously on process 'exit', so a worker that ends itself keeps its last lines.
 * That flush needs an open descriptor: the log file is opened here, synchronously, and
 * not by the destination in the background (a worker failing in its first milliseconds
 * lost its last line, and died of "sonic boom is not ready yet" on exit).
 *
 * The log file is reopened by its name on SIGHUP (the primary calls `reopenLog`) and, as
 * Hitch does, whenever the name no longer leads to the file we hold (logrotate moved it),
 * checked once a minute: a rotation never leaves a process writing into a deleted file.
 */
import { mkdirSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Writable } from 'node:stream';
import { type DestinationStream, type Logger, pino, type StreamEntry } from 'pino';
import type { LogLevelName, SyslogFacility } from '../config/model.js';
import { logCode, UnhitchError } from '../errors.js';
import { createSyslogStream } from './syslog.js';

export type { Logger } from 'pino';

export interface LogOptions {
  readonly level: LogLevelName;
  readonly quiet: boolean;
  /** Append to this file instead of stdout. */
  readonly filename?: string | undefined;
  /** Bound into every line, e.g. `{ worker: 2 }`. */
  readonly bindings?: Record<string, unknown>;
  /** Also send every line to syslog with this facility (logger(1) runs as uid/gid). */
  readonly syslog?: {
    readonly facility: SyslogFacility;
    readonly uid?: number | undefined;
    readonly gid?: number | undefined;
  };
  /** false: no stdout when there is no file (a daemon's stdout is /dev/null). */
  readonly console?: boolean;
  /** More destinations (the daemon's startup relay to its launcher). */
  readonly extraStreams?: readonly Writable[];
}

/** Hitch: LOG_REOPEN_INTERVAL, seconds between checks that the name is still our file. */
const LOG_REOPEN_CHECK_MS = 60_000;

type SonicBoom = ReturnType<typeof pino.destination>;

/**
 * The log file as one destination whose descriptor can be replaced: reopen() opens the
 * name again (synchronously, like the first open) and retires the old descriptor once
 * what was written to it has left.
 */
class ReopenableLogFile implements DestinationStream {
  private current: SonicBoom;
  private identity: string | undefined;

  constructor(readonly path: string) {
    this.current = pino.destination({ dest: openLogFile(path), sync: false });
    this.identity = fileIdentity(path);
  }

  write(line: string): void {
    this.current.write(line);
  }

  /** pino.multistream and pino's exit handler flush through this. */
  flushSync(): void {
    this.current.flushSync();
  }

  /** True when the name now leads elsewhere (moved, deleted, replaced). */
  moved(): boolean {
    return fileIdentity(this.path) !== this.identity;
  }

  reopen(): void {
    const next = pino.destination({ dest: openLogFile(this.path), sync: false });
    const previous = this.current;
    this.current = next;
    this.identity = fileIdentity(this.path);
    previous.end();
  }
}

const files = new WeakMap<Logger, ReopenableLogFile>();

export function createLogger(options: LogOptions): Logger {
  const level = options.quiet && options.level !== 'silent' ? 'error' : options.level;
  const streams: StreamEntry[] = [];
  let file: ReopenableLogFile | undefined;
  if (options.filename !== undefined) {
    file = new ReopenableLogFile(options.filename);
    streams.push({ level: 'trace', stream: file });
  } else if (options.console !== false) {
    streams.push({ level: 'trace', stream: pino.destination({ dest: 1, sync: false }) });
  }
  if (options.syslog !== undefined) {
    const stream = createSyslogStream({
      ...options.syslog,
      onRecovered: (dropped) =>
        logCode(
          logger,
          'UNHITCH_SYSLOG_DROPPED',
          { dropped },
          `syslog: ${dropped} lines dropped while the syslog socket was not reading`,
        ),
    });
    streams.push({ level: 'trace', stream });
  }
  for (const stream of options.extraStreams ?? []) streams.push({ level: 'trace', stream });
  const base = { pid: process.pid, ...options.bindings };
  // pino's standard `err` serializer (type, message, stack, code, cause) applies to the
  // `err` key: every error is logged there as the Error itself, never a copy of fields.
  const only = streams.length === 1 ? streams[0] : undefined;
  const logger = pino(
    { level, base },
    only !== undefined ? only.stream : pino.multistream(streams),
  );
  if (file !== undefined) {
    files.set(logger, file);
    const watched = file;
    setInterval(() => {
      if (watched.moved()) reopenLog(logger);
    }, LOG_REOPEN_CHECK_MS).unref();
  }
  return logger;
}

/** Reopen the log file by its name (after logrotate moved it). A no-op without a file. */
export function reopenLog(logger: Logger): void {
  const file = files.get(logger);
  if (file === undefined) return;
  try {
    file.reopen();
  } catch (error) {
    logCode(logger, 'UNHITCH_LOG_FILE', { err: error, file: file.path }, 'cannot reopen log file');
  }
}

function fileIdentity(path: string): string | undefined {
  try {
    const stats = statSync(path);
    return `${stats.dev}:${stats.ino}`;
  } catch {
    return undefined;
  }
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
