/**
 * `systemctl reload unhitch` learns whether the reload took (Debian 12's systemd 252 has
 * no Type=notify-reload). The primary publishes the verdict of each configuration reload
 * in a small JSON file next to its pidfile, replaced atomically (written aside, then
 * renamed over it); `unhitch --reload --pidfile=FILE` (the unit's ExecReload) signals the
 * primary named by the pidfile with SIGHUP and waits for the verdict of a reload that
 * began after it asked, then exits 0 or 1 with the reason.
 *
 * "Began after": both sides read CLOCK_MONOTONIC (process.hrtime), one clock for the
 * whole machine. A SIGHUP that arrives while a reload runs is folded into one more reload
 * afterwards (reload.ts); only that one read the configuration after the request, and
 * only its verdict answers it. `sequence` counts the verdicts of one primary.
 */
import { type FSWatcher, readFileSync, unlinkSync, watch } from 'node:fs';
import { dirname } from 'node:path';
import { UnhitchError } from '../errors.js';
import { writeFileNoFollow } from '../ops/privileges.js';

export type ReloadOutcome = 'reloaded' | 'rejected' | 'failed';

/** What reload.ts reports for one configuration reload. */
export interface ReloadReport {
  /** process.hrtime.bigint() when the reload began, before it read anything. */
  readonly begunAt: bigint;
  readonly outcome: ReloadOutcome;
  readonly message: string;
  /** The error's code for a rejected or failed reload. */
  readonly code?: string;
  /** The generation serving afterwards (the new one when reloaded). */
  readonly generation?: number;
}

/** The status file's content. */
export interface ReloadVerdict {
  readonly pid: number;
  readonly sequence: number;
  /** begunAt in nanoseconds, as decimal text (JSON has no bigint). */
  readonly begunAt: string;
  readonly outcome: ReloadOutcome;
  readonly message: string;
  readonly code?: string;
  readonly generation?: number;
}

/** Longer than a reload takes (preflight, forking a generation); below systemd's 90 s. */
export const RELOAD_VERDICT_TIMEOUT_MS = 60_000;
/** How often the waiter checks that the primary still lives (no event tells it). */
const LIVENESS_CHECK_MS = 250;

/** /run/unhitch/unhitch.pid → /run/unhitch/unhitch.reload; anything else + ".reload". */
export function reloadStatusPath(pidfile: string): string {
  return `${pidfile.endsWith('.pid') ? pidfile.slice(0, -'.pid'.length) : pidfile}.reload`;
}

/** The primary's side: one file, replaced whole on each verdict, removed at the stop. */
export class ReloadStatusFile {
  private sequence = 0;
  constructor(private readonly path: string) {}

  publish(report: ReloadReport): void {
    this.sequence += 1;
    const verdict: ReloadVerdict = {
      pid: process.pid,
      sequence: this.sequence,
      ...report,
      begunAt: report.begunAt.toString(),
    };
    // Written as root beside the pidfile, in a directory others may write to: never
    // through a file or symlink planted at a predictable name.
    writeFileNoFollow(this.path, `${JSON.stringify(verdict)}\n`, 0o644);
  }

  remove(): void {
    try {
      const current = readVerdict(this.path);
      if (current?.pid === process.pid) unlinkSync(this.path);
    } catch {
      // Already gone: nothing to clean.
    }
  }
}

function readVerdict(path: string): ReloadVerdict | undefined {
  try {
    const value = JSON.parse(readFileSync(path, 'utf8')) as Partial<ReloadVerdict>;
    if (
      typeof value.pid === 'number' &&
      typeof value.sequence === 'number' &&
      typeof value.begunAt === 'string' &&
      /^\d+$/.test(value.begunAt) &&
      (value.outcome === 'reloaded' ||
        value.outcome === 'rejected' ||
        value.outcome === 'failed') &&
      typeof value.message === 'string'
    )
      return value as ReloadVerdict;
  } catch {
    // Absent, or not ours.
  }
  return undefined;
}

function requestError(message: string, cause?: unknown): UnhitchError {
  return new UnhitchError('UNHITCH_RELOAD_REQUEST', message, { cause });
}

function readPid(pidfile: string): number {
  let text: string;
  try {
    text = readFileSync(pidfile, 'utf8');
  } catch (err) {
    throw requestError(
      `cannot read pidfile ${pidfile} (${(err as NodeJS.ErrnoException).code ?? String(err)}): is unhitch running with --pidfile=${pidfile}?`,
      err,
    );
  }
  const pid = Number(text.trim());
  if (!Number.isSafeInteger(pid) || pid <= 1)
    throw requestError(`pidfile ${pidfile} holds no process id`);
  return pid;
}

/** The entry scripts an unhitch process runs (the launchers and npm's bin end in these). */
const ENTRY_SCRIPT = /(^|\/)dist\/src\/(cli|bin)\.js$/;

/**
 * Why `pid` is not an unhitch process, or undefined when it is one (or the kernel does
 * not say: no /proc). A pidfile outlives a primary killed with SIGKILL, and its pid can be
 * reused by any process, which a SIGHUP from root would kill.
 */
function notUnhitch(pid: number): string | undefined {
  let argv: string[];
  try {
    argv = readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0');
  } catch {
    // No such process (signalling says so: ESRCH), or no /proc: nothing to check by.
    return undefined;
  }
  if (argv.some((arg) => ENTRY_SCRIPT.test(arg))) return undefined;
  const command = argv.filter((arg) => arg !== '').join(' ');
  return command.length > 120 ? `${command.slice(0, 117)}...` : command;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * SIGHUP to the primary named by `pidfile`, then its verdict on a reload that began after
 * the signal was sent. Throws UNHITCH_RELOAD_REQUEST when there is no primary to ask or it
 * gives no verdict (exited, or not within `timeoutMs`).
 */
export async function requestReload(
  pidfile: string,
  timeoutMs = RELOAD_VERDICT_TIMEOUT_MS,
): Promise<ReloadVerdict> {
  const pid = readPid(pidfile);
  const statusPath = reloadStatusPath(pidfile);
  let wake: () => void = () => {};
  // Watching before the signal: the verdict cannot be written unseen in between.
  let watcher: FSWatcher;
  try {
    watcher = watch(dirname(statusPath), () => wake());
  } catch (err) {
    throw requestError(`cannot watch ${dirname(statusPath)} for the verdict`, err);
  }
  try {
    const foreign = notUnhitch(pid);
    if (foreign !== undefined)
      throw requestError(
        `pid ${pid} from ${pidfile} is not unhitch (${foreign}): a stale pidfile? not signalled`,
      );
    const askedAt = process.hrtime.bigint();
    try {
      process.kill(pid, 'SIGHUP');
    } catch (err) {
      throw requestError(
        `cannot signal unhitch (pid ${pid} from ${pidfile}): ${(err as NodeJS.ErrnoException).code}`,
        err,
      );
    }
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const verdict = readVerdict(statusPath);
      if (verdict !== undefined && verdict.pid === pid && BigInt(verdict.begunAt) >= askedAt)
        return verdict;
      if (!isAlive(pid))
        throw requestError(`unhitch (pid ${pid}) exited before it gave a verdict on the reload`);
      if (Date.now() >= deadline)
        throw requestError(
          `no verdict from unhitch (pid ${pid}) in ${timeoutMs / 1000} s: see its log`,
        );
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, LIVENESS_CHECK_MS);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  } finally {
    watcher.close();
  }
}

/** `unhitch --reload`: one line, and 0 only when the new configuration serves. */
export async function reloadCommand(pidfile: string): Promise<number> {
  const verdict = await requestReload(pidfile);
  const code = verdict.code === undefined ? '' : ` [${verdict.code}]`;
  if (verdict.outcome === 'reloaded') {
    process.stdout.write(`unhitch: ${verdict.message}\n`);
    return 0;
  }
  process.stderr.write(`unhitch: ${verdict.message}${code}\n`);
  return 1;
}
