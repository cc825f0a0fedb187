/**
 * SIGHUP: re-read the command line and its config, start a new generation of workers
 * with it, and only when every new worker listens tell the old generation to drain. A
 * reload that fails at any step leaves the running generation serving.
 *
 * A certificate refresh (ACME obtained a certificate) is the same generation change with
 * the running configuration and freshly loaded certificates: open connections stay on
 * the old workers until they end, new ones meet the new certificate.
 */
import type { Worker } from 'node:cluster';
import type { Logger } from 'pino';
import { parseCommandLine } from '../config/load.js';
import type { ProxyConfig } from '../config/model.js';
import { logCode, UnhitchError } from '../errors.js';
import { preflight } from '../ops/preflight.js';
import type { CertificateMaterial } from '../tls/material.js';
import { announceListening } from './dbg-listen.js';
import type { ListenSockets } from './listen-sockets.js';
import type { ReloadReport } from './reload-status.js';
import type { Generation, Supervisor } from './supervisor.js';
import type { TicketKeyOwner } from './ticket-keys.js';

/** config: SIGHUP, re-read everything; certificates: same config, certificates re-read. */
export type ReloadKind = 'config' | 'certificates';

export interface ReloaderOptions {
  /** The command line, re-read on every reload (it names the config file). */
  readonly argv: readonly string[];
  readonly logger: Logger;
  readonly supervisor: Supervisor;
  readonly tickets: TicketKeyOwner;
  /** Shared with the supervisor: the new generation's slot i reuses slot i's socket. */
  readonly sockets: ListenSockets;
  readonly isStopping: () => boolean;
  /** The new generation serves: services that follow the certificates (OCSP) switch to it. */
  readonly onReloaded?: (config: ProxyConfig, certificates: readonly CertificateMaterial[]) => void;
  /** The verdict of each configuration reload (SIGHUP), for `unhitch --reload` (reload-status.ts). */
  readonly onVerdict?: (report: ReloadReport) => void;
}

export class Reloader {
  private readonly options: ReloaderOptions;
  private readonly logger: Logger;
  /** Workers of old generations, draining → their generation's id. */
  private readonly retiring = new Map<Worker, number>();
  private reloading = false;
  /** Asked for while a reload ran; a config reload covers a certificate refresh too. */
  private pending: ReloadKind | undefined;

  constructor(options: ReloaderOptions) {
    this.options = options;
    this.logger = options.logger;
  }

  /** One generation at a time; a HUP during a reload asks for one more afterwards. */
  async reload(kind: ReloadKind = 'config'): Promise<void> {
    if (this.options.isStopping()) return;
    if (this.reloading) {
      this.pending = this.pending === 'config' ? 'config' : kind;
      return;
    }
    this.reloading = true;
    try {
      await this.reloadOnce(kind);
    } finally {
      this.reloading = false;
    }
    const again = this.pending;
    if (again !== undefined) {
      this.pending = undefined;
      await this.reload(again);
    }
  }

  /** True (and logged) when `worker` was an old-generation worker that finished draining. */
  workerExited(worker: Worker, code: number | null): boolean {
    if (!this.retiring.delete(worker)) return false;
    this.logger.info(
      { workerPid: worker.process.pid, exitCode: code },
      'old-generation worker finished',
    );
    return true;
  }

  /** 'unhitch:drained' from an old-generation worker: logged (its exit follows). */
  workerDrained(worker: Worker, forcedClosed: number): void {
    const generation = this.retiring.get(worker);
    if (generation === undefined) return;
    this.logger.info(
      { generation, workerPid: worker.process.pid, forcedClosed },
      'old-generation worker drained',
    );
  }

  private async reloadOnce(kind: ReloadKind): Promise<void> {
    const { supervisor } = this.options;
    const begunAt = process.hrtime.bigint();
    const verdict = (report: Omit<ReloadReport, 'begunAt'>): void => {
      if (kind === 'config') this.options.onVerdict?.({ begunAt, ...report });
    };
    let config: ProxyConfig;
    let certificates: CertificateMaterial[];
    try {
      if (kind === 'certificates') {
        config = supervisor.current.config;
      } else {
        const action = parseCommandLine(this.options.argv);
        if (action.kind !== 'run')
          throw new UnhitchError(
            'UNHITCH_RELOAD_REJECTED',
            `reload: command line no longer runs a proxy (${action.kind})`,
          );
        config = action.config;
      }
      // The same checks as the start (and --test): a config the start would refuse, or
      // whose TLS settings a worker could not build, is refused here, before any fork.
      const checked = await preflight(config, {
        isRoot: process.getuid?.() === 0,
        mode: 'start',
      });
      for (const warning of checked.identityWarnings)
        logCode(this.logger, 'UNHITCH_IDENTITY_IGNORED', {}, warning);
      for (const warning of checked.certificateWarnings)
        logCode(this.logger, 'UNHITCH_CERTIFICATE_WARNING', {}, warning);
      certificates = checked.certificates;
      config = checked.config;
    } catch (error) {
      logCode(
        this.logger,
        'UNHITCH_RELOAD_REJECTED',
        { err: error },
        'reload rejected; the running configuration stays',
      );
      const code = (error as { code?: unknown } | null)?.code;
      verdict({
        outcome: 'rejected',
        message: `reload rejected, the running configuration stays: ${error instanceof Error ? error.message : String(error)}`,
        code: typeof code === 'string' ? code : 'UNHITCH_RELOAD_REJECTED',
        generation: supervisor.current.id,
      });
      return;
    }
    // The running generation stays current until the new one listens: a worker of it
    // that dies meanwhile is restarted as usual, whether the reload then fails or not.
    // Before the new generation starts, so its workers start with the file's key too.
    if (kind === 'config') this.options.tickets.reloadFile(config);
    const next = supervisor.newGeneration(config, certificates);
    const ok = await supervisor.startGeneration(next, supervisor.workerCount(config));
    // stop() has taken charge of both generations.
    if (this.options.isStopping()) return;
    if (!ok) {
      logCode(
        this.logger,
        'UNHITCH_RELOAD_FAILED',
        { generation: next.id },
        'reload failed: new workers did not start; the running configuration stays',
      );
      supervisor.killAll(next);
      this.keepSocketsOf(supervisor.current.config);
      verdict({
        outcome: 'failed',
        message:
          'reload failed: new workers did not start; the running configuration stays (see the log)',
        code: 'UNHITCH_RELOAD_FAILED',
        generation: supervisor.current.id,
      });
      return;
    }
    const previous = supervisor.current;
    supervisor.current = next;
    this.options.tickets.schedule(config);
    this.options.onReloaded?.(config, certificates);
    this.retire(previous, config.reloadDrainTimeoutMs);
    // Sockets of frontends (or slots) the new config dropped: the old workers stopped
    // accepting on them just now; connections still queued there are reset by the kernel.
    this.keepSocketsOf(config);
    this.logger.info(
      { generation: next.id, source: config.source, kind },
      kind === 'config' ? 'reloaded' : 'certificates reloaded',
    );
    announceListening(next, this.logger);
    verdict({
      outcome: 'reloaded',
      message: `reloaded (generation ${next.id})`,
      generation: next.id,
    });
  }

  private keepSocketsOf(config: ProxyConfig): void {
    this.options.sockets.retainOnly(
      config.frontends.map((frontend) => frontend.address),
      this.options.supervisor.workerCount(config),
    );
  }

  /**
   * The old generation stops accepting and keeps its connections for at most `graceMs`
   * (HAProxy's hard-stop-after): WebSockets live for days, and certificate renewals
   * would otherwise pile up generations without end.
   */
  private retire(generation: Generation, graceMs: number): void {
    const { supervisor } = this.options;
    const draining: Worker[] = [];
    for (const worker of generation.workers.values()) {
      // Restarted a moment ago and not started yet: it holds no connection, and could
      // miss the drain order.
      if (!supervisor.isGreeted(worker)) {
        worker.process.kill('SIGKILL');
        continue;
      }
      this.retiring.set(worker, generation.id);
      draining.push(worker);
      supervisor.send(worker, { type: 'unhitch:drain', graceMs });
    }
    generation.workers.clear();
    supervisor.killAfter(draining, graceMs);
  }
}
