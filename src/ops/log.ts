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
 *
 * Workers run as `user` and cannot open a file root made (`mv u.log u.log.1; touch
 * u.log`, or logrotate's `create`). So the primary, which can, reopens first: it hands the
 * new file to the workers' user (as nginx's master does on USR1) and orders every worker,
 * draining ones included, to reopen (`followLogFile`). A worker's own check reopens only
 * a name that stayed moved for three checks, when the primary did not act. A reopen that
 * fails keeps the file held, is logged once (UNHITCH_LOG_REOPEN) and retried at each check.
 */
import {
  closeSync,
  fchmodSync,
  fchownSync,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  statSync,
} from 'node:fs';
import { dirname } from 'node:path';
import type { Writable } from 'node:stream';
import { type DestinationStream, type Logger, pino, type StreamEntry } from 'pino';
import type { LogFormat, LogLevelName, SyslogFacility } from '../config/model.js';
import { logCode, UnhitchError } from '../errors.js';
import { consoleDestination, fileDestination } from './log-format.js';
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
  /** stdout and the log file: JSON, readable lines, or auto (readable on a terminal). */
  readonly format?: LogFormat | undefined;
  /**
   * A worker: the primary reopens first and orders the reopen; our own check reopens
   * only a name that stayed moved for WORKER_OWN_REOPEN_CHECKS checks.
   */
  readonly followsPrimary?: boolean;
  /** Between checks that the name is still our file; default LOG_REOPEN_CHECK_MS. */
  readonly reopenCheckMs?: number;
}

/** Hitch: LOG_REOPEN_INTERVAL, seconds between checks that the name is still our file. */
const LOG_REOPEN_CHECK_MS = 60_000;
/**
 * A worker reopens on its own a name that stayed moved this many checks: by then the
 * primary's own check (as often) has reopened and ordered the reopen, unless it failed.
 */
const WORKER_OWN_REOPEN_CHECKS = 3;
/** Tests shorten the check (the interval is Hitch's and not configurable). */
export const LOG_REOPEN_CHECK_ENV = 'UNHITCH_LOG_REOPEN_CHECK_MS';

/**
 * The interval, from the options, else the environment (tests), else Hitch's. Only 1 ms
 * up to Hitch's minute is taken from the environment: node turns a delay past 2^31-1 ms
 * into 1 ms (TimeoutOverflowWarning), which would make the check a busy loop.
 */
export function reopenCheckMs(options: Pick<LogOptions, 'reopenCheckMs'>): number {
  if (options.reopenCheckMs !== undefined) return options.reopenCheckMs;
  const fromEnv = Number(process.env[LOG_REOPEN_CHECK_ENV]);
  return Number.isInteger(fromEnv) && fromEnv > 0 && fromEnv <= LOG_REOPEN_CHECK_MS
    ? fromEnv
    : LOG_REOPEN_CHECK_MS;
}

type SonicBoom = ReturnType<typeof pino.destination>;

/**
 * The log file as one destination whose descriptor can be replaced: reopen() opens the
 * name again (synchronously, like the first open) and retires the old descriptor once
 * what was written to it has left.
 */
class ReopenableLogFile implements DestinationStream {
  private current: SonicBoom;
  /** What `current` writes to. */
  private descriptor: number;
  private identity: string;
  /** Set by the primary: who must be able to open the file after a rotation. */
  owner: LogFileOwner | undefined;
  /** Told after each reopen (the primary orders the workers' reopen). */
  reopened: (() => void) | undefined;
  /** A reopen failed and was logged: the next failure is not, the next success is. */
  failing = false;
  /** Consecutive checks that found the name moved. */
  movedChecks = 0;

  constructor(readonly path: string) {
    const descriptor = openLogFile(path);
    this.descriptor = descriptor;
    this.current = pino.destination({ dest: descriptor, sync: false });
    this.identity = descriptorIdentity(descriptor);
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

  /** Throws (keeping the file held) when the name cannot be opened. */
  reopen(): void {
    const descriptor = openLogFile(this.path);
    try {
      if (this.owner !== undefined) handOver(descriptor, this.path, this.owner);
    } catch (error) {
      // Retried at each check: a descriptor kept per failure would leak one a minute.
      closeSync(descriptor);
      throw error;
    }
    const previous = this.current;
    this.descriptor = descriptor;
    this.current = pino.destination({ dest: descriptor, sync: false });
    this.identity = descriptorIdentity(descriptor);
    this.movedChecks = 0;
    previous.end();
  }

  /** The file held now, handed to `owner` (the primary at start, as Hitch 1.8 does). */
  handOverCurrent(owner: LogFileOwner): void {
    handOver(this.descriptor, this.path, owner);
  }
}

/** The workers' user and group, who own the log file. */
export interface LogFileOwner {
  readonly uid: number;
  readonly gid: number;
}

/**
 * Makes the file opened at `path` writable by `owner` (the workers' user and group), as
 * Hitch 1.8 does at start and nginx's master when it reopens its logs: owner and group,
 * owner read/write. Only a plain file the name itself leads to with no other name: never
 * through a symlink or a hard link someone planted to have root hand over another file.
 */
function handOver(descriptor: number, path: string, owner: LogFileOwner): void {
  const opened = fstatSync(descriptor);
  const named = lstatSync(path);
  const plain =
    named.isFile() && named.dev === opened.dev && named.ino === opened.ino && opened.nlink === 1;
  if (!plain) return;
  if (opened.uid !== owner.uid || opened.gid !== owner.gid)
    fchownSync(descriptor, owner.uid, owner.gid);
  if ((opened.mode & 0o600) !== 0o600) fchmodSync(descriptor, (opened.mode | 0o600) & 0o7777);
}

const files = new WeakMap<Logger, ReopenableLogFile>();

export function createLogger(options: LogOptions): Logger {
  const level = options.quiet && options.level !== 'silent' ? 'error' : options.level;
  const streams: StreamEntry[] = [];
  let file: ReopenableLogFile | undefined;
  if (options.filename !== undefined) {
    file = new ReopenableLogFile(options.filename);
    streams.push({ level: 'trace', stream: fileDestination(file, options.format ?? 'auto') });
  } else if (options.console !== false) {
    streams.push({ level: 'trace', stream: consoleDestination(options.format ?? 'auto') });
  }
  if (options.syslog !== undefined) {
    const stream = createSyslogStream({
      ...options.syslog,
      onRecovered: (dropped) =>
        logCode(
          logger,
          'UNHITCH_SYSLOG_DROPPED',
          { dropped },
          `syslog: ${dropped} lines dropped while syslog took none (its socket not reading, or logger(1) not starting)`,
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
    const checksBeforeOwnReopen = options.followsPrimary === true ? WORKER_OWN_REOPEN_CHECKS : 1;
    setInterval(() => {
      if (!watched.moved()) {
        watched.movedChecks = 0;
        return;
      }
      watched.movedChecks += 1;
      if (watched.movedChecks >= checksBeforeOwnReopen) reopenLog(logger);
    }, reopenCheckMs(options)).unref();
  }
  return logger;
}

/**
 * The primary: hand its log file to `owner` (the workers' user and group; undefined:
 * leave it) now and after each reopen, and call `reopened` after each (which orders the
 * workers' reopen). A no-op without a file.
 */
export function followLogFile(
  logger: Logger,
  options: { readonly owner: LogFileOwner | undefined; readonly reopened: () => void },
): void {
  const file = files.get(logger);
  if (file === undefined) return;
  file.owner = options.owner;
  file.reopened = options.reopened;
  if (options.owner === undefined) return;
  try {
    file.handOverCurrent(options.owner);
  } catch (error) {
    // A file system that refuses chown (say, root_squash NFS): the workers still write
    // through the descriptor they inherit; a rotation then says why it cannot reopen.
    logger.warn({ err: error, file: file.path }, "cannot hand the log file to the workers' user");
  }
}

/** The log settings of the config (a subset of ProxyConfig). */
export interface LogSettings {
  readonly logLevel: LogLevelName;
  readonly quiet: boolean;
  readonly logFilename: string | undefined;
  readonly syslog: boolean;
  readonly syslogFacility: SyslogFacility;
  readonly daemon: boolean;
  readonly logFormat: LogFormat;
}

/**
 * The logger of a child of the primary (a worker, the services process), made while it
 * is still root: `identity` is what it is about to drop to, and logger(1) runs as that.
 * It follows the primary's log rotation.
 */
export function createChildLogger(
  config: LogSettings,
  bindings: Record<string, unknown>,
  identity: { readonly uid: number; readonly gid: number } | undefined,
): Logger {
  return createLogger({
    level: config.logLevel,
    quiet: config.quiet,
    filename: config.logFilename,
    format: config.logFormat,
    bindings,
    ...(config.syslog
      ? { syslog: { facility: config.syslogFacility, uid: identity?.uid, gid: identity?.gid } }
      : {}),
    // A daemon's stdout is /dev/null: without a file or syslog, nothing is written.
    console: !config.daemon,
    followsPrimary: true,
  });
}

/**
 * Reopen the log file by its name (after logrotate moved it). A no-op without a file.
 * A failure keeps the file held; it is logged once, until a reopen succeeds again.
 */
export function reopenLog(logger: Logger): void {
  const file = files.get(logger);
  if (file === undefined) return;
  try {
    file.reopen();
  } catch (error) {
    if (!file.failing) {
      logCode(
        logger,
        'UNHITCH_LOG_REOPEN',
        { err: error, file: file.path },
        'cannot reopen the log file; writing on into the file held, retrying at each check',
      );
    }
    file.failing = true;
    return;
  }
  if (file.failing) {
    file.failing = false;
    logger.info({ file: file.path }, 'log file reopened');
  }
  file.reopened?.();
}

function descriptorIdentity(descriptor: number): string {
  const stats = fstatSync(descriptor);
  return `${stats.dev}:${stats.ino}`;
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

/**
 * Write out what `logger` holds (pino writes asynchronously), so a line printed next (the
 * demo's URL) comes after it. A stream that cannot flush now is left to flush on its own.
 */
export function flushLogSync(logger: Logger): void {
  const stream = (logger as unknown as Record<symbol, { flushSync?: () => void } | undefined>)[
    pino.symbols.streamSym
  ];
  try {
    stream?.flushSync?.();
  } catch {
    // Not open yet, or busy: the lines still come, only perhaps after the next print.
  }
}
