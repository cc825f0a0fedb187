/**
 * The worker processes: fork one per slot of a generation, pin it, hand it its start
 * order once it says hello, and restart a crashed worker of the current generation with
 * a back-off that grows while it keeps crashing soon after start.
 */
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { ProxyConfig, TcpAddress } from '../config/model.js';
import { logCode } from '../errors.js';
import type { ListenHandle } from '../net/listen-socket.js';
import { type Identity, resolveIdentity } from '../ops/privileges.js';
import type { CertificateMaterial } from '../tls/material.js';
import { cpuForWorker, pinProcess } from './affinity.js';
import type { ListenSockets } from './listen-sockets.js';
import { isWorkerMessage, type PrimaryMessage, reviveError } from './messages.js';
import { workerExecArgv } from './worker-heap.js';

/** A worker that dies sooner than this after its start counts as crash-looping. */
const STABLE_AFTER_MS = 5_000;
const RESTART_DELAY_MIN_MS = 100;
const RESTART_DELAY_MAX_MS = 30_000;
/** From this restart delay on, a crashed slot's sockets are closed instead of queueing. */
const RELEASE_SOCKET_AFTER_MS = 1_000;
/** How long past its drain period a worker may take to close and exit. */
const DRAIN_KILL_SLACK_MS = 2_000;
const WORKER_ENTRY = fileURLToPath(new URL('./worker.js', import.meta.url));

/** The workers started from one configuration (the first one, or one per reload). */
export interface Generation {
  readonly id: number;
  readonly config: ProxyConfig;
  readonly certificates: readonly CertificateMaterial[];
  /** Slot index → live worker. */
  readonly workers: Map<number, Worker>;
  /** Slot index → the addresses that worker reported listening on (dbg-listen). */
  readonly listening: Map<number, readonly TcpAddress[]>;
}

interface WorkerMeta {
  readonly generation: number;
  readonly index: number;
  readonly startedAt: number;
}

interface SlotState {
  restartDelayMs: number;
}

export interface SupervisorOptions {
  readonly logger: Logger;
  /** The inherited affinity mask; worker `i` is pinned to one CPU of it. */
  readonly allowedCpus: readonly number[];
  /** The ticket key a worker gets in its start order. */
  readonly ticketKey: () => Buffer;
  /** The listening sockets, one per (frontend address, slot), that workers get copies of. */
  readonly sockets: ListenSockets;
}

export class Supervisor {
  private readonly logger: Logger;
  private readonly allowedCpus: readonly number[];
  private readonly ticketKey: () => Buffer;
  private readonly sockets: ListenSockets;
  /** The uid/gid a generation's workers switch to (looked up once, here, not in workers). */
  private readonly identities = new WeakMap<Generation, Identity | undefined>();
  private readonly meta = new WeakMap<Worker, WorkerMeta>();
  /** Workers whose message handler runs (they said hello): a message reaches them. */
  private readonly greeted = new WeakSet<Worker>();
  private readonly slots = new Map<number, SlotState>();
  /** Ends a worker's start wait with false (its sockets or start order could not be made). */
  private readonly startFailed = new WeakMap<Worker, () => void>();
  private nextGeneration = 1;
  private halted = false;
  /** Why the first worker that could not start did not (the start's stderr line says it). */
  firstStartError: unknown;
  /** The generation that serves, whose crashed workers are restarted. */
  current!: Generation;

  constructor(options: SupervisorOptions) {
    this.logger = options.logger;
    this.allowedCpus = options.allowedCpus;
    this.ticketKey = options.ticketKey;
    this.sockets = options.sockets;
  }

  /** Sets up node:cluster; `onExit` sees every worker exit. Call once. */
  install(onExit: (worker: Worker, code: number | null, signal: string | null) => void): void {
    // Workers listen on sockets this process hands them (listen(handle) bypasses the
    // cluster's scheduling); SCHED_NONE keeps any other listen out of a round robin here.
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    cluster.setupPrimary({
      exec: WORKER_ENTRY,
      execArgv: workerExecArgv(process.execArgv, process.env.NODE_OPTIONS),
      serialization: 'advanced',
    });
    cluster.on('exit', onExit);
  }

  /** No more start orders or restarts: the primary is stopping. */
  halt(): void {
    this.halted = true;
  }

  newGeneration(config: ProxyConfig, certificates: readonly CertificateMaterial[]): Generation {
    return {
      id: this.nextGeneration++,
      config,
      certificates,
      workers: new Map(),
      listening: new Map(),
    };
  }

  workerCount(config: ProxyConfig): number {
    // availableParallelism() honours the affinity mask (taskset), unlike os.cpus().
    return config.workers ?? Math.max(1, Math.min(availableParallelism(), this.allowedCpus.length));
  }

  /** Forks every slot of a generation; true once all listen, false if any fails. */
  async startGeneration(generation: Generation, count: number): Promise<boolean> {
    const results = await Promise.all(
      Array.from({ length: count }, (_, index) => this.forkWorker(generation, index)),
    );
    return results.every(Boolean);
  }

  /** Every live worker, of any generation, including those still starting. */
  allWorkers(): Worker[] {
    return Object.values(cluster.workers ?? {}).filter(
      (worker): worker is Worker => worker !== undefined && !worker.isDead(),
    );
  }

  isGreeted(worker: Worker): boolean {
    return this.greeted.has(worker);
  }

  /**
   * node still calls a worker connected after it has exited, until this process reads the
   * channel's end. A write then fails (EPIPE) and, without a callback, node emits that as
   * an 'error' nothing handled: it ended the primary when SIGTERM came while a reload's old
   * worker was exiting. The worker's 'exit' follows and is handled as any other.
   */
  send(worker: Worker, message: PrimaryMessage, handle?: ListenHandle): void {
    if (!worker.isConnected()) return;
    worker.send(message, handle as never, {}, (error: Error | null) => {
      if (error) this.undelivered(worker, message, error);
    });
  }

  private undelivered(worker: Worker, message: PrimaryMessage, error: Error): void {
    logCode(
      this.logger,
      'UNHITCH_WORKER_IPC',
      { workerPid: worker.process.pid, message: message.type, err: error },
      'message to an exiting worker not delivered',
    );
  }

  /**
   * Backstop for a drain: a worker still alive `graceMs` plus some slack after it was
   * told to drain (stuck event loop) is killed.
   */
  killAfter(workers: readonly Worker[], graceMs: number): void {
    if (workers.length === 0) return;
    setTimeout(() => {
      for (const worker of workers) {
        if (worker.isDead()) continue;
        logCode(
          this.logger,
          'UNHITCH_WORKER_KILLED',
          { workerPid: worker.process.pid, graceMs },
          'worker still running after its drain period; killed',
        );
        worker.process.kill('SIGKILL');
      }
    }, graceMs + DRAIN_KILL_SLACK_MS).unref();
  }

  /** Hands `message` to every live worker that listens for orders, of any generation. */
  broadcast(message: PrimaryMessage): void {
    for (const worker of this.allWorkers()) if (this.isGreeted(worker)) this.send(worker, message);
  }

  killAll(generation: Generation): void {
    for (const worker of generation.workers.values()) worker.process.kill('SIGKILL');
    generation.workers.clear();
  }

  /** A worker exited: if it held a slot of the current generation, restart that slot. */
  workerExited(worker: Worker, code: number | null, signal: string | null): void {
    const meta = this.meta.get(worker);
    if (
      meta === undefined ||
      meta.generation !== this.current.id ||
      this.current.workers.get(meta.index) !== worker
    )
      return;
    this.current.workers.delete(meta.index);
    if (!this.halted) this.scheduleRestart(meta, code, signal);
  }

  private forkWorker(generation: Generation, index: number): Promise<boolean> {
    const worker = cluster.fork({ UNHITCH_WORKER_INDEX: String(index) });
    // Backstop for any other failed write on the channel: logged, never thrown.
    worker.on('error', (error: Error) =>
      logCode(
        this.logger,
        'UNHITCH_WORKER_IPC',
        { workerPid: worker.process.pid, err: error },
        'worker channel error',
      ),
    );
    generation.workers.set(index, worker);
    this.meta.set(worker, { generation: generation.id, index, startedAt: Date.now() });
    const cpu = cpuForWorker(this.allowedCpus, index);
    // Pin before the worker is told to start: it drops privileges before it listens, and
    // a root primary without CAP_SYS_NICE could no longer change its affinity then.
    const pinned = generation.config.pinWorkers
      ? new Promise<void>((resolve) =>
          worker.once('online', () => {
            pinProcess(worker.process.pid as number, cpu).then(resolve, (error: Error) => {
              logCode(
                this.logger,
                'UNHITCH_AFFINITY',
                { worker: index, cpu, err: error },
                'cannot pin worker',
              );
              resolve();
            });
          }),
        )
      : Promise.resolve();
    const failed = new Promise<false>((resolve) => {
      this.startFailed.set(worker, () => resolve(false));
    });
    const onHello = (message: unknown): void => {
      if (!isWorkerMessage(message) || message.type !== 'unhitch:hello') return;
      worker.off('message', onHello);
      this.greeted.add(worker);
      void pinned
        .then(() => this.sendStart(worker, generation, index))
        .catch((error: unknown) => {
          this.firstStartError ??= error;
          logCode(
            this.logger,
            'UNHITCH_WORKER_START',
            { worker: index, err: error },
            'worker could not start',
          );
          worker.process.kill('SIGKILL');
          this.startFailed.get(worker)?.();
        });
    };
    // A worker that paused accepting (fd exhaustion) asks for its socket again.
    worker.on('message', (message: unknown) => {
      if (!isWorkerMessage(message) || message.type !== 'unhitch:listen-socket-request') return;
      // Retired (draining) or stopping: no socket, and none bound again after closeAll().
      if (this.halted || generation.workers.get(index) !== worker) return;
      void this.sendSocket(worker, generation, index, message.frontend).catch((error: unknown) => {
        logCode(
          this.logger,
          'UNHITCH_LISTEN',
          { worker: index, err: error },
          'cannot resend listen socket',
        );
      });
    });
    worker.on('message', onHello);
    return new Promise((resolve) => {
      const onMessage = (message: unknown): void => {
        if (!isWorkerMessage(message)) return;
        if (message.type === 'unhitch:listening') {
          worker.off('message', onMessage);
          generation.listening.set(index, message.addresses);
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
          const error = reviveError(message.error);
          this.firstStartError ??= error;
          logCode(
            this.logger,
            'UNHITCH_WORKER_START',
            { worker: index, err: error },
            'worker could not start',
          );
          resolve(false);
        }
      };
      worker.on('message', onMessage);
      worker.once('exit', () => resolve(false));
      void failed.then(resolve);
    });
  }

  /**
   * The worker's sockets (bound here, as root if we are), then its start order. Each
   * socket crosses the IPC channel as its own message; the worker listens only after it
   * has switched to the configured user.
   */
  private async sendStart(worker: Worker, generation: Generation, index: number): Promise<void> {
    if (this.halted) return;
    const identity = this.identityFor(generation);
    for (let frontend = 0; frontend < generation.config.frontends.length; frontend++)
      await this.sendSocket(worker, generation, index, frontend);
    if (this.halted) return;
    this.send(worker, {
      type: 'unhitch:start',
      workerIndex: index,
      generation: generation.id,
      config: generation.config,
      certificates: generation.certificates,
      ticketKey: this.ticketKey(),
      identity,
    });
  }

  private async sendSocket(
    worker: Worker,
    generation: Generation,
    index: number,
    frontend: number,
  ): Promise<void> {
    const address = generation.config.frontends[frontend]?.address;
    if (address === undefined) throw new Error(`no frontend ${frontend}`);
    const handle: ListenHandle = await this.sockets.socketFor(address, index);
    // A raw TCP handle crosses as node's 'net.Native': the worker gets its own descriptor
    // and this process keeps its copy (no listen here, so it never accepts).
    this.send(worker, { type: 'unhitch:listen-socket', frontend }, handle);
  }

  private identityFor(generation: Generation): Identity | undefined {
    if (this.identities.has(generation)) return this.identities.get(generation);
    const { user, group } = generation.config;
    const identity = process.getuid?.() === 0 ? resolveIdentity(user, group) : undefined;
    this.identities.set(generation, identity);
    return identity;
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
    // A slot that keeps crashing would hold the clients the kernel hashes to its socket
    // for the whole delay. While siblings serve, its socket goes: new clients reach them
    // (the few queued there are reset), and the replacement gets a freshly bound one.
    if (delay >= RELEASE_SOCKET_AFTER_MS && this.current.workers.size > 0) {
      this.sockets.closeSlot(meta.index);
      this.logger.info(
        { worker: meta.index, restartInMs: delay },
        'worker keeps crashing: its listening sockets closed until it is back',
      );
    }
    logCode(
      this.logger,
      'UNHITCH_WORKER_DIED',
      { worker: meta.index, exitCode: code, signal, restartInMs: delay },
      'worker died; restarting',
    );
    const generation = this.current;
    setTimeout(() => {
      if (this.halted || generation !== this.current || generation.workers.has(meta.index)) return;
      void this.forkWorker(generation, meta.index);
    }, delay);
  }
}
