/**
 * The primary: never serves traffic. It loads config and certificates (as root, before
 * any drop), owns the session ticket key, forks one worker per CPU of the inherited
 * affinity mask and pins each inside it, restarts crashed workers, and turns signals
 * into reloads (SIGHUP) and drains (SIGTERM/SIGINT).
 */
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { parseCommandLine } from '../config/load.js';
import type { ProxyConfig } from '../config/model.js';
import { unsupportedSettings } from '../config/unsupported.js';
import { startMetricsServer } from '../ops/metrics.js';
import { checkIdentity, writePidfile } from '../ops/privileges.js';
import { type CertificateMaterial, loadCertificates } from '../tls/material.js';
import { generateTicketKey, loadOrCreateTicketKeyFile, saveTicketKeyFile } from '../tls/tickets.js';
import { cpuForWorker, pinProcess, readAllowedCpus } from './affinity.js';
import { isWorkerMessage, type PrimaryMessage } from './messages.js';

export interface PrimaryOptions {
  /** The command line, re-read on SIGHUP (it names the config file). */
  readonly argv: readonly string[];
  readonly config: ProxyConfig;
  readonly logger: Logger;
  /** Certificates already loaded by the caller; loaded here when absent. */
  readonly certificates?: readonly CertificateMaterial[];
  /** Called once, when every worker of the first generation listens. */
  readonly onReady?: () => void;
}

/** A worker that dies sooner than this after its start counts as crash-looping. */
const STABLE_AFTER_MS = 5_000;
const RESTART_DELAY_MIN_MS = 100;
const RESTART_DELAY_MAX_MS = 30_000;
const WORKER_ENTRY = fileURLToPath(new URL('./worker.js', import.meta.url));

interface Generation {
  readonly id: number;
  readonly config: ProxyConfig;
  readonly certificates: readonly CertificateMaterial[];
  /** Slot index → live worker. */
  readonly workers: Map<number, Worker>;
}

interface SlotState {
  restartDelayMs: number;
}

export async function runPrimary(options: PrimaryOptions): Promise<void> {
  const primary = new Primary(options);
  await primary.run();
}

class Primary {
  private readonly logger: Logger;
  private readonly argv: readonly string[];
  private readonly onReady: (() => void) | undefined;
  private current: Generation;
  private readonly retiring = new Set<Worker>();
  /** Workers whose message handler runs (they said hello): a drain reaches them. */
  private readonly greeted = new WeakSet<Worker>();
  /** Every live worker at the stop signal, until it exits. */
  private readonly stopWaiting = new Set<Worker>();
  private readonly slots = new Map<number, SlotState>();
  private readonly allowedCpus: number[];
  private ticketKey: Buffer;
  private rotationTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  private reloading = false;
  private reloadAgain = false;
  private nextGeneration = 1;
  private done!: () => void;
  private readonly cleanups: Array<() => void | Promise<void>> = [];

  constructor(options: PrimaryOptions) {
    this.logger = options.logger;
    this.argv = options.argv;
    this.onReady = options.onReady;
    const certificates =
      options.certificates ??
      loadCertificates(options.config, (message) => this.logger.warn(message));
    this.current = this.newGeneration(options.config, certificates);
    this.allowedCpus = readAllowedCpus('self');
    this.ticketKey = this.initialTicketKey(options.config);
  }

  async run(): Promise<void> {
    const config = this.current.config;
    for (const warning of checkIdentity(config, { isRoot: process.getuid?.() === 0 }).warnings) {
      this.logger.warn(warning);
    }
    for (const setting of unsupportedSettings(config)) {
      this.logger.warn(
        { option: setting.option, code: 'UNHITCH_UNSUPPORTED_SETTING' },
        setting.message,
      );
    }
    if (config.pidfile !== undefined) this.cleanups.push(writePidfile(config.pidfile));
    if (config.metrics !== undefined) {
      const server = await startMetricsServer({ address: config.metrics, logger: this.logger });
      this.cleanups.push(() => server.close());
      this.logger.info({ port: server.port }, 'metrics endpoint listening');
    }

    // Each worker accepts on the shared socket itself; the primary's round robin would
    // put every connection through this process first.
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    cluster.setupPrimary({ exec: WORKER_ENTRY, serialization: 'advanced' });
    cluster.on('exit', (worker, code, signal) => this.workerExited(worker, code, signal));
    this.startRotation(config);

    const finished = new Promise<void>((resolve) => {
      this.done = resolve;
    });
    const onReload = (): void => void this.reload();
    const onStop = (signal: NodeJS.Signals): void => this.stop(signal);
    process.on('SIGHUP', onReload);
    process.on('SIGTERM', onStop);
    process.on('SIGINT', onStop);

    const workerCount = this.workerCount(config);
    this.logger.info(
      {
        workers: workerCount,
        cpus: this.allowedCpus,
        pin: config.pinWorkers,
        source: config.source,
      },
      'starting',
    );
    const started = await this.startGeneration(this.current, workerCount);
    // A stop signal during startup ends the workers still starting: that is a clean stop.
    if (!started && !this.stopping) {
      this.stopping = true;
      this.killAll(this.current);
      await this.runCleanups();
      process.off('SIGHUP', onReload);
      process.off('SIGTERM', onStop);
      process.off('SIGINT', onStop);
      throw Object.assign(new Error('workers failed to start; see the log above'), {
        code: 'UNHITCH_WORKERS_FAILED',
      });
    }
    if (started) this.onReady?.();
    await finished;
    process.off('SIGHUP', onReload);
    process.off('SIGTERM', onStop);
    process.off('SIGINT', onStop);
  }

  private workerCount(config: ProxyConfig): number {
    // availableParallelism() honours the affinity mask (taskset), unlike os.cpus().
    return config.workers ?? Math.max(1, Math.min(availableParallelism(), this.allowedCpus.length));
  }

  private newGeneration(
    config: ProxyConfig,
    certificates: readonly CertificateMaterial[],
  ): Generation {
    return { id: this.nextGeneration++, config, certificates, workers: new Map() };
  }

  private initialTicketKey(config: ProxyConfig): Buffer {
    if (config.ticketKeyFile === undefined) return generateTicketKey();
    const loaded = loadOrCreateTicketKeyFile(config.ticketKeyFile);
    if (loaded.insecureMode) {
      this.logger.warn(
        { file: config.ticketKeyFile },
        'ticket key file is readable by group or others',
      );
    }
    return loaded.key;
  }

  private startRotation(config: ProxyConfig): void {
    if (this.rotationTimer) clearInterval(this.rotationTimer);
    if (config.ticketRotationSec <= 0) return;
    this.rotationTimer = setInterval(() => this.rotateTicketKey(), config.ticketRotationSec * 1000);
    this.rotationTimer.unref();
  }

  private rotateTicketKey(): void {
    this.ticketKey = generateTicketKey();
    const file = this.current.config.ticketKeyFile;
    if (file !== undefined) saveTicketKeyFile(file, this.ticketKey);
    // Every worker switches in the same tick: a ticket minted anywhere resumes anywhere.
    for (const worker of this.liveWorkers())
      this.send(worker, { type: 'unhitch:ticket-key', key: this.ticketKey });
    this.logger.info('session ticket key rotated');
  }

  private *liveWorkers(): Iterable<Worker> {
    yield* this.current.workers.values();
  }

  /** Forks every slot of a generation; true once all listen, false if any fails. */
  private async startGeneration(generation: Generation, count: number): Promise<boolean> {
    const results = await Promise.all(
      Array.from({ length: count }, (_, index) => this.forkWorker(generation, index)),
    );
    return results.every(Boolean);
  }

  private forkWorker(generation: Generation, index: number): Promise<boolean> {
    const worker = cluster.fork({ UNHITCH_WORKER_INDEX: String(index) });
    generation.workers.set(index, worker);
    const startedAt = Date.now();
    (worker as Worker & { unhitch?: WorkerMeta }).unhitch = {
      generation: generation.id,
      index,
      startedAt,
    };
    const cpu = cpuForWorker(this.allowedCpus, index);
    // Pin before the worker is told to start: it drops privileges after it listens, and
    // a root primary without CAP_SYS_NICE could no longer change its affinity then.
    const pinned = generation.config.pinWorkers
      ? new Promise<void>((resolve) =>
          worker.once('online', () => {
            pinProcess(worker.process.pid as number, cpu).then(resolve, (error: Error) => {
              this.logger.warn({ worker: index, cpu, err: error.message }, 'cannot pin worker');
              resolve();
            });
          }),
        )
      : Promise.resolve();
    const onHello = (message: unknown): void => {
      if (!isWorkerMessage(message) || message.type !== 'unhitch:hello') return;
      worker.off('message', onHello);
      this.greeted.add(worker);
      void pinned.then(() => {
        if (this.stopping) return;
        this.send(worker, {
          type: 'unhitch:start',
          workerIndex: index,
          generation: generation.id,
          config: generation.config,
          certificates: generation.certificates,
          ticketKey: this.ticketKey,
        });
      });
    };
    worker.on('message', onHello);
    return new Promise((resolve) => {
      const onMessage = (message: unknown): void => {
        if (!isWorkerMessage(message)) return;
        if (message.type === 'unhitch:listening') {
          worker.off('message', onMessage);
          this.logger.info(
            {
              worker: index,
              workerPid: worker.process.pid,
              cpu: generation.config.pinWorkers ? cpu : undefined,
            },
            'worker ready',
          );
          resolve(true);
        } else if (message.type === 'unhitch:start-failed') {
          worker.off('message', onMessage);
          this.logger.error(
            { worker: index, code: message.code, err: message.message },
            'worker could not start',
          );
          resolve(false);
        }
      };
      worker.on('message', onMessage);
      worker.once('exit', () => resolve(false));
    });
  }

  private workerExited(worker: Worker, code: number | null, signal: string | null): void {
    const meta = (worker as Worker & { unhitch?: WorkerMeta }).unhitch;
    if (this.retiring.delete(worker)) {
      this.logger.info({ pid: worker.process.pid, code }, 'old-generation worker finished');
    } else if (
      meta &&
      meta.generation === this.current.id &&
      this.current.workers.get(meta.index) === worker
    ) {
      this.current.workers.delete(meta.index);
      if (!this.stopping) this.scheduleRestart(meta, code, signal);
    }
    if (this.stopping && this.stopWaiting.delete(worker) && this.stopWaiting.size === 0)
      void this.finish();
  }

  private scheduleRestart(meta: WorkerMeta, code: number | null, signal: string | null): void {
    const slot = this.slots.get(meta.index) ?? { restartDelayMs: RESTART_DELAY_MIN_MS };
    const lived = Date.now() - meta.startedAt;
    slot.restartDelayMs =
      lived >= STABLE_AFTER_MS
        ? RESTART_DELAY_MIN_MS
        : Math.min(slot.restartDelayMs * 2, RESTART_DELAY_MAX_MS);
    this.slots.set(meta.index, slot);
    const delay = lived >= STABLE_AFTER_MS ? RESTART_DELAY_MIN_MS : slot.restartDelayMs;
    this.logger.error(
      { worker: meta.index, code, signal, restartInMs: delay },
      'worker died; restarting',
    );
    const generation = this.current;
    setTimeout(() => {
      if (this.stopping || generation !== this.current || generation.workers.has(meta.index))
        return;
      void this.forkWorker(generation, meta.index);
    }, delay);
  }

  /** SIGHUP: a new generation with the re-read config; the old one drains without a limit. */
  private async reload(): Promise<void> {
    if (this.stopping) return;
    if (this.reloading) {
      // One generation at a time; a HUP during a reload asks for one more afterwards.
      this.reloadAgain = true;
      return;
    }
    this.reloading = true;
    try {
      await this.reloadOnce();
    } finally {
      this.reloading = false;
    }
    if (this.reloadAgain) {
      this.reloadAgain = false;
      await this.reload();
    }
  }

  private async reloadOnce(): Promise<void> {
    let config: ProxyConfig;
    let certificates: CertificateMaterial[];
    try {
      const action = parseCommandLine(this.argv);
      if (action.kind !== 'run')
        throw new Error(`reload: command line no longer runs a proxy (${action.kind})`);
      config = action.config;
      certificates = loadCertificates(config, (message) => this.logger.warn(message));
    } catch (error) {
      const err = error as NodeJS.ErrnoException;
      this.logger.error(
        { code: err.code, err: err.message },
        'reload rejected; the running configuration stays',
      );
      return;
    }
    const previous = this.current;
    const next = this.newGeneration(config, certificates);
    this.current = next;
    const ok = await this.startGeneration(next, this.workerCount(config));
    // stop() has taken charge of both generations.
    if (this.stopping) return;
    if (!ok) {
      this.logger.error(
        'reload failed: new workers did not start; the running configuration stays',
      );
      this.current = previous;
      this.killAll(next);
      return;
    }
    this.startRotation(config);
    for (const worker of previous.workers.values()) {
      this.retiring.add(worker);
      this.send(worker, { type: 'unhitch:drain', graceMs: null });
    }
    previous.workers.clear();
    this.logger.info({ generation: next.id, source: config.source }, 'reloaded');
  }

  private stop(signal: NodeJS.Signals): void {
    if (this.stopping) {
      this.logger.warn({ signal }, 'second stop signal: exiting now');
      for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGKILL');
      void this.finish();
      return;
    }
    this.stopping = true;
    const graceMs = this.current.config.drainTimeoutMs;
    this.logger.info({ signal, graceMs }, 'draining');
    if (this.rotationTimer) clearInterval(this.rotationTimer);
    // Every live worker: the current generation, a retiring one, and one still starting
    // in a reload.
    const workers = Object.values(cluster.workers ?? {}).filter(
      (worker): worker is Worker => worker !== undefined && !worker.isDead(),
    );
    if (workers.length === 0) {
      void this.finish();
      return;
    }
    for (const worker of workers) {
      this.stopWaiting.add(worker);
      // A worker that has not said hello yet could miss the message, and has not been
      // told to listen, so it holds no connection.
      if (this.greeted.has(worker)) this.send(worker, { type: 'unhitch:drain', graceMs });
      else worker.process.kill('SIGKILL');
    }
    // A worker that ignores the drain (stuck event loop) is killed a little after the grace.
    setTimeout(() => {
      for (const worker of workers) if (!worker.isDead()) worker.process.kill('SIGKILL');
    }, graceMs + 2_000).unref();
  }

  private killAll(generation: Generation): void {
    for (const worker of generation.workers.values()) worker.process.kill('SIGKILL');
    generation.workers.clear();
  }

  private send(worker: Worker, message: PrimaryMessage): void {
    if (worker.isConnected()) worker.send(message);
  }

  private finished = false;

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
        this.logger.warn({ err: (error as Error).message }, 'cleanup failed');
      }
    }
  }
}

interface WorkerMeta {
  readonly generation: number;
  readonly index: number;
  readonly startedAt: number;
}
