/**
 * The primary's end of the services process (cluster/net-services.ts): fork it, give it
 * its identity and config once it says hello, restart it with a growing back-off when
 * it dies, and dispatch what it reports to one handler per report type. The parts that
 * use it (ACME, OCSP) register their handlers, resend their state each time a fresh
 * process is ready, and fail what they were waiting for when it exits.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { ProxyConfig } from '../config/model.js';
import { logCode } from '../errors.js';
import type { ListenHandle } from '../net/listen-socket.js';
import { type Identity, resolveIdentity } from '../ops/privileges.js';
import {
  isServicesReport,
  type ServicesOrder,
  type ServicesReport,
  servicesReportProblem,
} from './messages.js';
import { workerExecArgv } from './worker-heap.js';

const ENTRY = fileURLToPath(new URL('./net-services.js', import.meta.url));
const RESTART_DELAY_MIN_MS = 500;
const RESTART_DELAY_MAX_MS = 30_000;
/** A process that lived this long was healthy: the next restart starts from the minimum. */
const STABLE_AFTER_MS = 60_000;
/** How long the process gets to exit on the stop order before it is killed. */
const STOP_GRACE_MS = 2_000;

type ReportType = ServicesReport['type'];
type Report<T extends ReportType> = Extract<ServicesReport, { type: T }>;
type Handlers = { [T in ReportType]?: (report: Report<T>) => void };

export interface ServicesProcessOptions {
  readonly logger: Logger;
  /** The configuration in service now: logging settings and the identity to switch to. */
  readonly config: () => ProxyConfig;
  /** The module to fork (tests: a stand-in); net-services.js otherwise. */
  readonly entry?: string;
}

export class ServicesProcess {
  private readonly logger: Logger;
  private child: ChildProcess | undefined;
  private ready = false;
  private stopping = false;
  private startedAt = 0;
  private restartDelayMs = RESTART_DELAY_MIN_MS;
  private restartTimer: NodeJS.Timeout | undefined;
  /** What the running process was started with (identity and log settings), as a key. */
  private startedWith: string | undefined;
  /** The running process was told to exit to pick up a new identity or log settings. */
  private replacing = false;
  private readonly handlers: Handlers = {};
  private readonly readyCallbacks: Array<() => void> = [];
  private readonly exitCallbacks: Array<() => void> = [];
  private readonly readyWaiters: Array<(ready: boolean) => void> = [];

  constructor(private readonly options: ServicesProcessOptions) {
    this.logger = options.logger;
    this.on('unhitch:services-hello', () => this.sendStart());
    this.on('unhitch:services-ready', () => {
      this.ready = true;
      for (const callback of this.readyCallbacks) callback();
      for (const waiter of this.readyWaiters.splice(0)) waiter(true);
    });
  }

  /** The one handler for reports of `type` (a second registration replaces the first). */
  on<T extends ReportType>(type: T, handler: (report: Report<T>) => void): void {
    (this.handlers as Record<T, (report: Report<T>) => void>)[type] = handler;
  }

  /** Each time a (re)started process has switched to its identity. */
  onReady(callback: () => void): void {
    this.readyCallbacks.push(callback);
    if (this.ready) callback();
  }

  /** Each time the process exits (what it was doing for you is lost). */
  onExit(callback: () => void): void {
    this.exitCallbacks.push(callback);
  }

  /** True once a process is ready (at once if one is), false after `timeoutMs` or on stop. */
  whenReady(timeoutMs: number): Promise<boolean> {
    if (this.ready) return Promise.resolve(true);
    if (this.stopping) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      timer.unref();
      this.readyWaiters.push((ready) => {
        clearTimeout(timer);
        resolve(ready);
      });
    });
  }

  start(): void {
    if (this.stopping || this.child !== undefined) return;
    this.startedAt = Date.now();
    const child = fork(this.options.entry ?? ENTRY, [], {
      execArgv: workerExecArgv(process.execArgv, process.env.NODE_OPTIONS),
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.child = child;
    child.on('message', (value: unknown) => {
      if (!isServicesReport(value)) return;
      // Root takes nothing from the unprivileged side on trust: a malformed report is
      // refused whole and its sender replaced, never half-handled.
      const problem = servicesReportProblem(value);
      if (problem === undefined) this.dispatch(value);
      else this.refuse(child, problem);
    });
    let gone = false;
    const exited = (code: number | null, signal: string | null, error?: Error): void => {
      if (gone) return;
      gone = true;
      this.exited(child, code, signal, error);
    };
    child.on('exit', (code, signal) => exited(code, signal));
    // A fork that fails (EMFILE, EAGAIN) emits 'error' and 'close', never 'exit'.
    child.on('error', (error) => {
      if (child.pid === undefined || child.exitCode !== null) exited(null, null, error);
      else logCode(this.logger, 'UNHITCH_WORKER_IPC', { err: error }, 'services channel error');
    });
  }

  /** false when there is no ready process to take it (the caller's state is resent on ready). */
  send(order: ServicesOrder, handle?: ListenHandle): boolean {
    const child = this.child;
    if (!this.ready || child === undefined || !child.connected) return false;
    child.send(order, handle as never, {}, (error: Error | null) => {
      if (error)
        logCode(
          this.logger,
          'UNHITCH_WORKER_IPC',
          { servicesPid: child.pid, message: order.type, err: error },
          'message to the services process not delivered',
        );
    });
    return true;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    for (const waiter of this.readyWaiters.splice(0)) waiter(false);
    const child = this.child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    if (child.connected) child.send({ type: 'unhitch:services-stop' } satisfies ServicesOrder);
    else child.kill('SIGKILL');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    await exited;
    clearTimeout(timer);
  }

  private refuse(child: ChildProcess, problem: string): void {
    logCode(
      this.logger,
      'UNHITCH_SERVICES_REPORT_INVALID',
      { servicesPid: child.pid, problem },
      'services process sent a malformed report; killing it',
    );
    child.kill('SIGKILL');
  }

  private dispatch(report: ServicesReport): void {
    const handler = this.handlers[report.type] as ((report: ServicesReport) => void) | undefined;
    handler?.(report);
  }

  private sendStart(): void {
    const child = this.child;
    if (child === undefined || !child.connected) return;
    const config = this.options.config();
    let identity: Identity | undefined;
    try {
      identity = process.getuid?.() === 0 ? resolveIdentity(config.user, config.group) : undefined;
    } catch (error) {
      // The account went away since the start was checked: no identity, no network.
      logCode(this.logger, 'UNHITCH_SERVICES_DIED', { err: error }, 'services process not started');
      child.kill('SIGKILL');
      return;
    }
    this.startedWith = startKey(config);
    child.send({ type: 'unhitch:services-start', config, identity } satisfies ServicesOrder);
  }

  /**
   * After a reload: a new user, group or log setting takes a fresh process (it switched
   * identity and opened its log once, at its start); anything else is an order away.
   */
  reconfigure(config: ProxyConfig): void {
    const child = this.child;
    if (child === undefined || this.startedWith === startKey(config) || this.replacing) return;
    this.replacing = true;
    if (this.ready && child.connected)
      child.send({ type: 'unhitch:services-stop' } satisfies ServicesOrder);
    else child.kill('SIGKILL');
  }

  private exited(
    child: ChildProcess,
    code: number | null,
    signal: string | null,
    error: Error | undefined,
  ): void {
    if (this.child !== child) return;
    this.child = undefined;
    this.ready = false;
    for (const callback of this.exitCallbacks) callback();
    if (this.stopping) return;
    if (this.replacing) {
      this.replacing = false;
      this.logger.info({ servicesPid: child.pid }, 'services process replaced after a reload');
      this.start();
      return;
    }
    const lived = Date.now() - this.startedAt;
    this.restartDelayMs =
      lived >= STABLE_AFTER_MS
        ? RESTART_DELAY_MIN_MS
        : Math.min(this.restartDelayMs * 2, RESTART_DELAY_MAX_MS);
    const delay = lived >= STABLE_AFTER_MS ? RESTART_DELAY_MIN_MS : this.restartDelayMs;
    logCode(
      this.logger,
      'UNHITCH_SERVICES_DIED',
      { servicesPid: child.pid, exitCode: code, signal, err: error, restartInMs: delay },
      'services process died; restarting',
    );
    this.restartTimer = setTimeout(() => this.start(), delay);
    this.restartTimer.unref();
  }
}

function startKey(config: ProxyConfig): string {
  const { user, group, logFilename, logLevel, quiet, syslog, syslogFacility, daemon } = config;
  return JSON.stringify([
    user,
    group,
    logFilename,
    logLevel,
    quiet,
    syslog,
    syslogFacility,
    daemon,
  ]);
}
