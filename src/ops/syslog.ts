/**
 * `syslog = on`: log lines to the local syslog socket, as Hitch's vsyslog() does.
 *
 * Node has no unix datagram sockets (the npm addons that add them are native builds), so
 * each logging process keeps one `logger(1)` (util-linux) child and writes its lines to
 * the child's stdin, each with a `<severity>` prefix (`--prio-prefix`); logger adds the
 * facility, the tag and our PID, and sends RFC 3164 datagrams to /dev/log. When the socket
 * is missing, logger drops the lines silently, like syslog(3).
 *
 * When the socket is there but stops reading (a hung syslog daemon), logger(1) blocks in
 * send() and its stdin pipe fills: what we write then waits in this process. At most
 * SYSLOG_BACKLOG_BYTES wait; lines past that are dropped and counted (the log-lines
 * metric), and once the backlog has gone out one line says how many were lost.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { Writable } from 'node:stream';
import type { SyslogFacility } from '../config/model.js';

/** Tests point this at a socket they listen on; production leaves it unset. */
export const SYSLOG_SOCKET_ENV = 'UNHITCH_SYSLOG_SOCKET';
const DEFAULT_SOCKET = '/dev/log';
export const SYSLOG_TAG = 'unhitch';

/** What may wait for logger(1) (some 3,000 lines) before new lines are dropped. */
export const SYSLOG_BACKLOG_BYTES = 1024 * 1024;
/** How long after logger(1) failed to start the next line tries again. */
export const SYSLOG_SPAWN_RETRY_MS = 5_000;

/** Lines dropped since the process started (the log-lines metric). */
let droppedTotal = 0;

export function droppedSyslogLines(): number {
  return droppedTotal;
}

/** pino level number → syslog severity (RFC 5424 §6.2.1). */
export function syslogSeverity(pinoLevel: number): number {
  if (pinoLevel >= 60) return 2; // fatal → crit
  if (pinoLevel >= 50) return 3; // error → err
  if (pinoLevel >= 40) return 4; // warn → warning
  if (pinoLevel >= 30) return 6; // info
  return 7; // debug, trace
}

const OMITTED = new Set(['level', 'time', 'pid', 'hostname', 'msg']);

/** One pino JSON line → `<severity>message {other fields}` (undefined: not a log line). */
export function syslogLine(jsonLine: string): string | undefined {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(jsonLine) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const level = typeof record.level === 'number' ? record.level : 30;
  const rest: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(record)) if (!OMITTED.has(key)) rest[key] = value;
  const message = typeof record.msg === 'string' ? record.msg : '';
  const fields = Object.keys(rest).length > 0 ? ` ${JSON.stringify(rest)}` : '';
  // One datagram per line: a newline inside would split the message.
  return `<${syslogSeverity(level)}>${`${message}${fields}`.replace(/[\r\n]+/g, ' ')}`;
}

export interface SyslogOptions {
  readonly facility: SyslogFacility;
  /** Run logger(1) as this identity (a worker that dropped privileges). */
  readonly uid?: number | undefined;
  readonly gid?: number | undefined;
  /** Lines were dropped, and the backlog has now gone out: say so (once per episode). */
  readonly onRecovered?: (dropped: number) => void;
}

/** A stream for pino.multistream: every line written goes to syslog. */
export function createSyslogStream(options: SyslogOptions): Writable {
  let child: ChildProcess | undefined;
  /** logger(1) failed to start (missing, or no descriptor or process left): not before then. */
  let retryAt = 0;
  const failed = (which: ChildProcess | undefined): void => {
    retryAt = Date.now() + SYSLOG_SPAWN_RETRY_MS;
    if (which === child) child = undefined;
  };
  const start = (): ChildProcess | undefined => {
    if (child !== undefined && child.exitCode === null && child.stdin?.writable) return child;
    if (Date.now() < retryAt) return undefined;
    const socket = process.env[SYSLOG_SOCKET_ENV] ?? DEFAULT_SOCKET;
    let spawned: ChildProcess;
    try {
      spawned = spawn(
        'logger',
        [
          `--socket=${socket}`,
          '--socket-errors=off',
          '--prio-prefix',
          `--priority=${options.facility}.notice`,
          `--tag=${SYSLOG_TAG}`,
          `--id=${process.pid}`,
        ],
        {
          stdio: ['pipe', 'ignore', 'ignore'],
          ...(options.uid !== undefined ? { uid: options.uid } : {}),
          ...(options.gid !== undefined ? { gid: options.gid } : {}),
        },
      );
    } catch {
      failed(undefined);
      return undefined;
    }
    child = spawned;
    // ENOENT (no logger(1) on this host) or EAGAIN/EMFILE (a passing shortage): lines are
    // dropped and counted, as syslog(3) would lose them, and the start is tried again.
    spawned.on('error', () => failed(spawned));
    spawned.stdin?.on('error', () => {});
    // Never keep the process alive just for its log child.
    spawned.unref();
    (spawned.stdin as unknown as { unref?: () => void } | null)?.unref?.();
    return spawned;
  };
  /** Lines dropped since the backlog last went out. */
  let dropped = 0;
  /** The pipe whose 'drain' ends the current episode of drops. */
  let awaitedPipe: Writable | undefined;
  const recovered = (): void => {
    awaitedPipe = undefined;
    const count = dropped;
    dropped = 0;
    options.onRecovered?.(count);
  };
  const drop = (pipe: Writable): void => {
    dropped += 1;
    droppedTotal += 1;
    if (awaitedPipe === pipe) return;
    awaitedPipe = pipe;
    // Past the high-water mark every write returned false, so 'drain' comes when the
    // backlog is out (never if logger dies: see write()).
    pipe.once('drain', () => {
      if (awaitedPipe === pipe) recovered();
    });
  };
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      const pipe = start()?.stdin;
      // The pipe awaited was a logger(1) that died (its 'drain' never comes), or there was
      // none: a new one takes lines now, so the count is said now.
      if (pipe && dropped > 0 && awaitedPipe !== pipe) recovered();
      if (!pipe) {
        for (const line of chunk.toString('utf8').split('\n')) {
          if (line.length === 0) continue;
          dropped += 1;
          droppedTotal += 1;
        }
      } else {
        for (const line of chunk.toString('utf8').split('\n')) {
          const formatted = line.length > 0 ? syslogLine(line) : undefined;
          if (formatted === undefined) continue;
          if (pipe.writableLength >= SYSLOG_BACKLOG_BYTES) drop(pipe);
          else pipe.write(`${formatted}\n`);
        }
      }
      callback();
    },
    final(callback) {
      child?.stdin?.end();
      callback();
    },
  });
}
