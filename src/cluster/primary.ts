/**
 * The primary: never serves traffic. It loads config and certificates (as root, before
 * any drop) and wires the parts that each do one job: the supervisor (fork, pin,
 * restart), the ticket key owner (make, rotate, persist, distribute), the reloader
 * (SIGHUP → new generation, old one drains) and the services (pidfile, metrics). Here:
 * signals, and the drain on SIGTERM/SIGINT.
 */
import type { Worker } from 'node:cluster';
import { X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import { acmeCertificateSource } from '../acme/store.js';
import type { ProxyConfig } from '../config/model.js';
import { logCode, UnhitchError } from '../errors.js';
import { announceFrontends } from '../ops/frontend-summary.js';
import { flushLogSync, followLogFile, reopenLog } from '../ops/log.js';
import type { CertificateExpiry } from '../ops/metrics.js';
import { resolveIdentity } from '../ops/privileges.js';
import { type CertificateMaterial, loadCertificates } from '../tls/material.js';
import { AcmeManager } from './acme.js';
import { readAllowedCpus } from './affinity.js';
import { BanTable } from './bans.js';
import { announceListening } from './dbg-listen.js';
import { dispatchWorkerMessages } from './dispatch.js';
import { ListenSockets } from './listen-sockets.js';
import { OcspService } from './ocsp-service.js';
import { Reloader } from './reload.js';
import { ReloadStatusFile, reloadStatusPath } from './reload-status.js';
import { type Cleanup, startServices } from './services.js';
import { ServicesProcess } from './services-process.js';
import { startFailureMessage } from './start-failure.js';
import { Supervisor } from './supervisor.js';
import { TicketKeyOwner } from './ticket-keys.js';

export interface PrimaryOptions {
  /** The command line, re-read on SIGHUP (it names the config file). */
  readonly argv: readonly string[];
  readonly config: ProxyConfig;
  readonly logger: Logger;
  /** Certificates already loaded by the caller; loaded here when absent. */
  readonly certificates?: readonly CertificateMaterial[];
  /** Called once, when every worker of the first generation listens. */
  readonly onReady?: () => void;
  /**
   * The signals that start the drain (a second one exits at once). Default SIGTERM and
   * SIGINT; the demo takes SIGINT itself because under npm one Ctrl-C arrives twice.
   */
  readonly stopSignals?: readonly NodeJS.Signals[];
}

export async function runPrimary(options: PrimaryOptions): Promise<void> {
  const primary = new Primary(options);
  await primary.run();
}

/** How long the start waits for the services process to serve the metrics endpoint. */
const METRICS_START_MS = 10_000;

function withTimeout(promise: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

class Primary {
  private readonly logger: Logger;
  private readonly onReady: (() => void) | undefined;
  private readonly stopSignals: readonly NodeJS.Signals[];
  private readonly config: ProxyConfig;
  private readonly allowedCpus: number[];
  private readonly supervisor: Supervisor;
  private readonly tickets: TicketKeyOwner;
  private readonly reloader: Reloader;
  private readonly ocsp: OcspService;
  /** ACME orders and http-01, OCSP fetches: the network duties, as the configured user. */
  private readonly services: ServicesProcess;
  private readonly acme: AcmeManager;
  /** What the expiry metric reports: the serving generation's certificates. */
  private certificatesInService: readonly CertificateExpiry[] = [];
  private readonly sockets = new ListenSockets();
  /** deny-repeat-offenders: bans in force, for every worker (bans.ts). */
  private readonly bans = new BanTable();
  /** Every live worker at the stop signal, until it exits. */
  private readonly stopWaiting = new Set<Worker>();
  private stopping = false;
  private finished = false;
  private done!: () => void;
  private readonly cleanups: Cleanup[] = [];

  constructor(options: PrimaryOptions) {
    this.logger = options.logger;
    this.onReady = options.onReady;
    this.stopSignals = options.stopSignals ?? ['SIGTERM', 'SIGINT'];
    this.config = options.config;
    const warn = (message: string): void =>
      logCode(this.logger, 'UNHITCH_CERTIFICATE_WARNING', {}, message);
    const certificates =
      options.certificates ??
      loadCertificates(options.config, warn, acmeCertificateSource(options.config.acme, warn));
    this.allowedCpus = readAllowedCpus('self');
    this.supervisor = new Supervisor({
      logger: this.logger,
      allowedCpus: this.allowedCpus,
      ticketKey: () => this.tickets.current,
      sockets: this.sockets,
      bans: () => this.bans.live(),
    });
    this.supervisor.current = this.supervisor.newGeneration(options.config, certificates);
    this.tickets = new TicketKeyOwner({
      config: options.config,
      logger: this.logger,
      // Every generation: the old one still accepts while a reload starts the new one,
      // and a worker still starting must not keep the key its start order carried.
      broadcast: (key) => this.supervisor.broadcast({ type: 'unhitch:ticket-key', key }),
    });
    this.services = new ServicesProcess({
      logger: this.logger,
      config: () => this.supervisor.current.config,
    });
    this.ocsp = new OcspService(this.logger, this.services);
    // Beside the pidfile, where `unhitch --reload --pidfile=…` looks for it.
    const status =
      options.config.pidfile === undefined
        ? undefined
        : new ReloadStatusFile(reloadStatusPath(options.config.pidfile));
    if (status !== undefined) this.cleanups.push(() => status.remove());
    this.reloader = new Reloader({
      argv: options.argv,
      logger: this.logger,
      supervisor: this.supervisor,
      tickets: this.tickets,
      sockets: this.sockets,
      isStopping: () => this.stopping,
      onReloaded: (config, certificates) => {
        this.services.reconfigure(config);
        this.ocsp.start(config, certificates);
        this.certificatesInService = certificateExpiries(certificates);
        void this.acme.configure(config.acme);
      },
      onVerdict: (report) => {
        try {
          status?.publish(report);
        } catch (error) {
          logCode(
            this.logger,
            'UNHITCH_RELOAD_STATUS',
            { err: error },
            'reload verdict not written',
          );
        }
      },
    });
    this.acme = new AcmeManager({
      logger: this.logger,
      supervisor: this.supervisor,
      services: this.services,
      reloadCertificates: () => this.reloader.reload('certificates'),
    });
  }

  async run(): Promise<void> {
    const config = this.config;
    this.certificatesInService = certificateExpiries(this.supervisor.current.certificates);
    const { metricsListening } = await startServices(
      config,
      this.logger,
      this.cleanups,
      () => this.certificatesInService,
      this.services,
    );
    // Last out: every worker has exited (or been killed) when cleanups run.
    this.cleanups.push(() => this.sockets.closeAll());
    this.supervisor.install((worker, code, signal) => this.workerExited(worker, code, signal));
    this.cleanups.push(this.dispatchWorkerMessages());
    this.tickets.schedule(config);
    // Before ACME and OCSP (they wait for it to be ready); stopped after both.
    this.services.start();
    this.cleanups.push(() => this.services.stop());
    // Metrics answer from the first worker on (scrapers and tests start with the workers);
    // a services process that cannot start does not hold the proxy up beyond this.
    if (metricsListening !== undefined) await withTimeout(metricsListening, METRICS_START_MS);
    this.ocsp.start(config, this.supervisor.current.certificates);
    this.cleanups.push(() => this.ocsp.stop());

    // A rotated log file is reopened here first (as root), handed to the workers' user,
    // and then reopened by every worker, a draining generation's too, and the services
    // process (the same user).
    followLogFile(this.logger, {
      owner: process.getuid?.() === 0 ? resolveIdentity(config.user, config.group) : undefined,
      reopened: () => {
        this.supervisor.broadcast({ type: 'unhitch:reopen-log' });
        this.services.send({ type: 'unhitch:reopen-log' });
      },
    });
    const finished = new Promise<void>((resolve) => {
      this.done = resolve;
    });
    const onReload = (): void => {
      // logrotate's postrotate sends SIGHUP: the log file is reopened by its name first.
      reopenLog(this.logger);
      void this.reloader.reload();
    };
    const onStop = (signal: NodeJS.Signals): void => this.stop(signal);
    process.on('SIGHUP', onReload);
    for (const signal of this.stopSignals) process.on(signal, onStop);

    const workerCount = this.supervisor.workerCount(config);
    this.logger.info(
      {
        workers: workerCount,
        cpus: this.allowedCpus,
        pin: config.pinWorkers,
        source: config.source,
      },
      'starting',
    );
    const started = await this.supervisor.startGeneration(this.supervisor.current, workerCount);
    // A stop signal during startup ends the workers still starting: that is a clean stop.
    if (!started && !this.stopping) {
      this.stopping = true;
      this.supervisor.halt();
      this.supervisor.killAll(this.supervisor.current);
      await this.runCleanups();
      process.off('SIGHUP', onReload);
      for (const signal of this.stopSignals) process.off(signal, onStop);
      throw new UnhitchError(
        'UNHITCH_WORKERS_FAILED',
        startFailureMessage(this.supervisor.firstStartError),
      );
    }
    if (started) {
      // Before onReady: a daemon's launcher exits on it, and a script then reads the file.
      announceListening(this.supervisor.current, this.logger);
      announceFrontends(this.supervisor.current, this.logger);
      // What onReady prints (the demo's URL and how to stop it) comes after these lines.
      flushLogSync(this.logger);
      this.onReady?.();
      // The frontends answer tls-alpn-01 challenges, so orders start once they listen.
      this.cleanups.push(() => this.acme.stop());
      await this.acme.start(config.acme);
    }
    await finished;
    process.off('SIGHUP', onReload);
    for (const signal of this.stopSignals) process.off(signal, onStop);
  }

  /** The worker → primary protocol (messages.ts): who handles each message. */
  private dispatchWorkerMessages(): () => void {
    const { supervisor, reloader, acme } = this;
    return dispatchWorkerMessages({
      'unhitch:hello': (worker) => supervisor.workerGreeted(worker),
      'unhitch:listening': (worker, message) => {
        supervisor.workerListening(worker, message.addresses);
        acme.workerListening(worker);
      },
      'unhitch:ban': (_worker, message) => {
        this.bans.add(message.ban);
        supervisor.broadcast({ type: 'unhitch:bans', bans: [message.ban] });
      },
      'unhitch:start-failed': (worker, message) =>
        supervisor.workerStartFailed(worker, message.error),
      'unhitch:listen-socket-request': (worker, message) =>
        supervisor.socketRequested(worker, message.frontend),
      'unhitch:drained': (worker, message) => reloader.workerDrained(worker, message.forcedClosed),
      'unhitch:acme-challenge-done': (worker, message) =>
        acme.challengeDone(worker, message.id, message.accepted),
    });
  }

  private workerExited(worker: Worker, code: number | null, signal: string | null): void {
    if (!this.reloader.workerExited(worker, code))
      this.supervisor.workerExited(worker, code, signal);
    if (this.stopping && this.stopWaiting.delete(worker) && this.stopWaiting.size === 0)
      void this.finish();
  }

  private stop(signal: NodeJS.Signals): void {
    if (this.stopping) {
      this.logger.warn({ signal }, 'second stop signal: exiting now');
      for (const worker of this.supervisor.allWorkers()) worker.process.kill('SIGKILL');
      void this.finish();
      return;
    }
    this.stopping = true;
    this.supervisor.halt();
    const graceMs = this.supervisor.current.config.drainTimeoutMs;
    this.logger.info({ signal, graceMs }, 'draining');
    this.tickets.stop();
    // Every live worker: the current generation, a retiring one, and one still starting
    // in a reload.
    const workers = this.supervisor.allWorkers();
    if (workers.length === 0) {
      void this.finish();
      return;
    }
    for (const worker of workers) {
      this.stopWaiting.add(worker);
      // A worker that has not said hello yet could miss the message, and has not been
      // told to listen, so it holds no connection.
      if (this.supervisor.isGreeted(worker))
        this.supervisor.send(worker, { type: 'unhitch:drain', graceMs });
      else worker.process.kill('SIGKILL');
    }
    // Our copies of the listening sockets go now: once each worker closes its own on the
    // drain order, new clients are refused instead of queueing for a process that is
    // leaving (queued ones would only be reset when it exits).
    this.sockets.closeAll();
    // A worker that ignores the drain (stuck event loop) is killed a little after the grace.
    this.supervisor.killAfter(workers, graceMs);
  }

  private async finish(): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    await this.runCleanups();
    this.logger.info('stopped');
    this.logger.flush();
    this.done();
  }

  private async runCleanups(): Promise<void> {
    for (const cleanup of this.cleanups.splice(0)) {
      try {
        await cleanup();
      } catch (error) {
        logCode(this.logger, 'UNHITCH_CLEANUP', { err: error }, 'cleanup failed');
      }
    }
  }
}

/** Per certificate in service: its first name, where it came from, when it expires. */
function certificateExpiries(certificates: readonly CertificateMaterial[]): CertificateExpiry[] {
  return certificates.map((material) => ({
    name: material.names[0] ?? '',
    source: material.source,
    notAfterMs: Date.parse(new X509Certificate(material.cert).validTo),
  }));
}
