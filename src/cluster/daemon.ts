/**
 * `--daemon` / `daemon = on`, as Hitch does it but with an honest exit status.
 *
 * Hitch forks after binding and its parent exits 0. Node cannot fork, so the launcher
 * re-runs the same command line as a detached process (setsid: a new session, no
 * controlling terminal; stdin/stdout/stderr on /dev/null) and waits on a pipe for that
 * process to report. It exits 0 once every worker of the daemon listens, or 1 with the
 * daemon's error; in between it prints the daemon's startup lines (warnings, the
 * listening report) on its own stderr, since the daemon's stdio goes nowhere.
 *
 * The daemon itself works in "/" like Hitch (daemonize() chdirs before the pidfile is
 * written): the config, the certificates and the log file are opened before that, from
 * the directory it was started in; the pidfile, the dbg-listen file and every path read
 * on a reload (SIGHUP) resolve from "/".
 */

import { spawn } from 'node:child_process';
import { Socket } from 'node:net';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { LogFormat } from '../config/model.js';
import { prettyLine, resolveLogFormat } from '../ops/log-format.js';

/** Set in the daemon's environment; its presence tells command.ts it is the daemon. */
export const DAEMON_ENV = 'UNHITCH_DAEMON_REPORT_FD';
/** The daemon's end of the report pipe (stdio index 3 of the spawn). */
const REPORT_FD = 3;
const CLI_ENTRY = fileURLToPath(new URL('../cli.js', import.meta.url));

/** One line on the report pipe, JSON-encoded. */
type Report =
  | { readonly type: 'log'; readonly text: string }
  | { readonly type: 'ready'; readonly pid: number }
  | { readonly type: 'failed'; readonly text: string };

export function isDaemonChild(): boolean {
  return process.env[DAEMON_ENV] !== undefined;
}

/**
 * The launcher: start the daemon, relay its startup lines to stderr, return its verdict
 * as our exit status. `notices` are printed first (e.g. "no log destination").
 */
export async function launchDaemon(
  argv: readonly string[],
  notices: readonly string[],
  format: LogFormat = 'auto',
): Promise<number> {
  // The relayed lines are the daemon's JSON log lines: readable ones for a terminal.
  const relay = (text: string): string =>
    resolveLogFormat(format, process.stderr.isTTY === true) === 'pretty'
      ? prettyLine(text)
      : `${text}\n`;
  for (const notice of notices) process.stderr.write(`${notice}\n`);
  const child = spawn(process.execPath, [...process.execArgv, CLI_ENTRY, ...argv], {
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
    env: { ...process.env, [DAEMON_ENV]: String(REPORT_FD) },
  });
  const pipe = child.stdio[REPORT_FD] as Socket | null;
  if (pipe === null) throw new Error('daemon report pipe missing');
  return await new Promise<number>((resolve) => {
    let settled = false;
    let partial = '';
    const settle = (status: number): void => {
      if (settled) return;
      settled = true;
      pipe.destroy();
      // The daemon is on its own from here: do not keep the launcher alive for it.
      child.unref();
      resolve(status);
    };
    pipe.setEncoding('utf8');
    pipe.on('data', (chunk: string) => {
      partial += chunk;
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        const report = parseReport(line);
        if (report === undefined) continue;
        if (report.type === 'log') process.stderr.write(relay(report.text));
        else if (report.type === 'failed') {
          process.stderr.write(`${report.text}\n`);
          settle(1);
        } else settle(0);
      }
    });
    pipe.on('error', () => {});
    child.on('error', (error) => {
      process.stderr.write(`unhitch: cannot start the daemon: ${error.message} [UNHITCH_DAEMON]\n`);
      settle(1);
    });
    child.on('exit', (code, signal) => {
      if (settled) return;
      process.stderr.write(
        `unhitch: the daemon exited (${signal ?? `status ${code}`}) before its frontends listened [UNHITCH_DAEMON]\n`,
      );
      settle(1);
    });
  });
}

function parseReport(line: string): Report | undefined {
  try {
    const value = JSON.parse(line) as Partial<Report>;
    if (value.type === 'ready' && typeof value.pid === 'number')
      return { type: 'ready', pid: value.pid };
    if ((value.type === 'log' || value.type === 'failed') && typeof value.text === 'string')
      return { type: value.type, text: value.text };
  } catch {
    // Not ours: ignore.
  }
  return undefined;
}

/**
 * The daemon's side of the pipe. Until `ready()` or `failed()`, log lines written to
 * `stream` reach the launcher's stderr; afterwards the stream swallows them.
 */
export class DaemonReporter {
  private readonly socket: Socket | undefined;
  private open = true;
  /** For the logger: each pino line is relayed while the launcher waits. */
  readonly stream: Writable;

  constructor() {
    const fd = Number(process.env[DAEMON_ENV]);
    // Workers forked later must not see the variable and think they are the daemon.
    delete process.env[DAEMON_ENV];
    let socket: Socket | undefined;
    try {
      socket = Number.isInteger(fd)
        ? new Socket({ fd, readable: false, writable: true })
        : undefined;
      socket?.on('error', () => {
        this.open = false;
      });
    } catch {
      socket = undefined;
    }
    this.socket = socket;
    this.stream = new Writable({
      write: (chunk: Buffer, _encoding, callback) => {
        for (const line of chunk.toString('utf8').split('\n')) {
          if (line.length > 0) this.send({ type: 'log', text: line });
        }
        callback();
      },
    });
  }

  ready(): void {
    this.send({ type: 'ready', pid: process.pid });
    this.close();
  }

  /** Report the error and wait until it has left (the caller exits next). */
  async failed(text: string): Promise<void> {
    const socket = this.socket;
    if (!this.open || socket === undefined) return;
    this.open = false;
    await new Promise<void>((resolve) => {
      socket.end(`${JSON.stringify({ type: 'failed', text })}\n`, () => resolve());
      setTimeout(resolve, 2_000).unref();
    });
  }

  private send(report: Report): void {
    if (!this.open || this.socket === undefined) return;
    this.socket.write(`${JSON.stringify(report)}\n`);
  }

  private close(): void {
    if (!this.open) return;
    this.open = false;
    this.socket?.end();
  }
}
