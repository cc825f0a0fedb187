/**
 * The worker processes: fork one per slot of a generation, pin it, hand it its start
 * order once it says hello, and restart a worker of the current generation that crashed
 * or could not be forked, with a back-off that grows while that keeps happening
 * (restart-policy.ts). Its handlers for worker messages are called by the primary's one
 * dispatcher (dispatch.ts).
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
import { type ClientBan, type CrossedError, type PrimaryMessage, reviveError } from './messages.js';
import { RELEASE_SOCKET_AFTER_MS, restartDelayMs } from './restart-policy.js';
import { workerExecArgv } from './worker-heap.js';

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
  readonly generation: Generation;
  readonly index: number;
  readonly startedAt: number;
  /** Settles once the worker is pinned (at once when pinning is off or fails). */
  readonly pinned: Promise<void>;
  /** Ends the start wait (true: it listens); undefined once ended. */
  settle: ((ok: boolean) => void) | undefined;
}

export interface SupervisorOptions {
  readonly logger: Logger;
  /** The inherited affinity mask; worker `i` is pinned to one CPU of it. */
  readonly allowedCpus: readonly number[];
  /** The ticket key a worker gets in its start order. */
  readonly ticketKey: () => Buffer;
  /** The listening sockets, one per (frontend address, slot), that workers get copies of. */
  readonly sockets: ListenSockets;
  /** deny-repeat-offenders: the bans in force, in force in a worker before it listens. */
  readonly bans?: () => readonly ClientBan[];
}

export class Supervisor {
  private readonly logger: Logger;
  private readonly allowedCpus: readonly number[];
  private readonly ticketKey: () => Buffer;
  private readonly sockets: ListenSockets;
  private readonly bans: () => readonly ClientBan[];
  /** The uid/gid a generation's workers switch to (looked up once, here, not in workers). */
  private readonly identities = new WeakMap<Generation, Identity | undefined>();
  private readonly meta = new WeakMap<Worker, WorkerMeta>();
  /** Workers whose message handler runs (they said hello): a message reaches them. */
  private readonly greeted = new WeakSet<Worker>();
  /** Slot index → the delay its last restart used. */
  private readonly restartDelays = new Map<number, number>();
  /** Restarts waiting out their delay: cancelled on halt, or a stopping primary would wait too. */
  private readonly pendingRestarts = new Set<NodeJS.Timeout>();
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
    this.bans = options.bans ?? (() => []);
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
    // A slot in back-off (up to RESTART_DELAY_MAX_MS) would keep the stopped primary's
    // event loop alive until its restart time, for a restart that no longer happens.
    for (const timer of this.pendingRestarts) clearTimeout(timer);
    this.pendingRestarts.clear();
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
    if (meta === undefined) return;
    this.settle(meta, false);
    if (!this.holdsSlot(worker, meta)) return;
    const restartInMs = this.slotLost(meta);
    // Stopping: its exit is the drain's end, not a crash.
    if (restartInMs === undefined) return;
    logCode(
      this.logger,
      'UNHITCH_WORKER_DIED',
      { worker: meta.index, exitCode: code, signal, restartInMs },
      'worker died; restarting',
    );
  }

  /** 'unhitch:hello': its message handler runs; once pinned, it gets its sockets and start order. */
  workerGreeted(worker: Worker): void {
    const meta = this.meta.get(worker);
    if (meta === undefined || this.greeted.has(worker)) return;
    this.greeted.add(worker);
    void meta.pinned
      .then(() => this.sendStart(worker, meta.generation, meta.index))
      .catch((error: unknown) => {
        this.firstStartError ??= error;
        logCode(
          this.logger,
          'UNHITCH_WORKER_START',
          { worker: meta.index, err: error },
          'worker could not start',
        );
        worker.process.kill('SIGKILL');
        this.settle(meta, false);
      });
  }

  /** 'unhitch:listening': the worker serves; its start wait ends. */
  workerListening(worker: Worker, addresses: readonly TcpAddress[]): void {
    const meta = this.meta.get(worker);
    if (meta?.settle === undefined) return;
    meta.generation.listening.set(meta.index, addresses);
    this.logger.info(
      {
        worker: meta.index,
        workerPid: worker.process.pid,
        cpu: meta.generation.config.pinWorkers
          ? cpuForWorker(this.allowedCpus, meta.index)
          : undefined,
      },
      'worker ready',
    );
    this.settle(meta, true);
  }

  /** 'unhitch:start-failed': the worker could not build its frontends (it exits next). */
  workerStartFailed(worker: Worker, error: CrossedError): void {
    const meta = this.meta.get(worker);
    if (meta?.settle === undefined) return;
    const revived = reviveError(error);
    this.firstStartError ??= revived;
    logCode(
      this.logger,
      'UNHITCH_WORKER_START',
      { worker: meta.index, err: revived },
      'worker could not start',
    );
    this.settle(meta, false);
  }

  /** 'unhitch:listen-socket-request': a worker that paused accepting (fd exhaustion) resumes. */
  socketRequested(worker: Worker, frontend: number): void {
    const meta = this.meta.get(worker);
    // Retired (draining) or stopping: no socket, and none bound again after closeAll().
    if (meta === undefined || this.halted || !this.holdsSlot(worker, meta)) return;
    void this.sendSocket(worker, meta.generation, meta.index, frontend).catch((error: unknown) => {
      logCode(
        this.logger,
        'UNHITCH_LISTEN',
        { worker: meta.index, err: error },
        'cannot resend listen socket',
      );
    });
  }

  /** Fork, pin, and wait until it listens (true) or fails to (false). */
  private forkWorker(generation: Generation, index: number): Promise<boolean> {
    let worker: Worker;
    try {
      worker = cluster.fork({ UNHITCH_WORKER_INDEX: String(index) });
    } catch (error) {
      // node throws for some spawn errors (EPERM, ENOMEM) and emits the others (below).
      this.spawnFailed(generation, index, error);
      return Promise.resolve(false);
    }
    generation.workers.set(index, worker);
    return new Promise<boolean>((resolve) => {
      const meta: WorkerMeta = {
        generation,
        index,
        startedAt: Date.now(),
        pinned: this.pin(worker, generation, index),
        settle: resolve,
      };
      this.meta.set(worker, meta);
      worker.on('error', (error: Error) => this.workerError(worker, meta, error));
    });
  }

  /**
   * Pin before the worker is told to start: it drops privileges before it listens, and
   * a root primary without CAP_SYS_NICE could no longer change its affinity then.
   */
  private pin(worker: Worker, generation: Generation, index: number): Promise<void> {
    if (!generation.config.pinWorkers) return Promise.resolve();
    const cpu = cpuForWorker(this.allowedCpus, index);
    return new Promise<void>((resolve) =>
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
    );
  }

  /**
   * A fork that failed in the kernel (EMFILE, EAGAIN, ENOMEM) is reported by node as an
   * 'error' on a child that has no PID and never emits 'exit': without this the slot
   * would wait for ever. Any other error is a failed write on the channel: logged.
   */
  private workerError(worker: Worker, meta: WorkerMeta, error: Error): void {
    if (worker.process.pid !== undefined) {
      logCode(
        this.logger,
        'UNHITCH_WORKER_IPC',
        { workerPid: worker.process.pid, err: error },
        'worker channel error',
      );
      return;
    }
    // node:cluster forgets a worker only on 'exit', which never comes.
    if (cluster.workers?.[worker.id] === worker) delete cluster.workers[worker.id];
    this.settle(meta, false);
    const held = this.holdsSlot(worker, meta);
    if (meta.generation.workers.get(meta.index) === worker)
      meta.generation.workers.delete(meta.index);
    this.spawnFailed(meta.generation, meta.index, error, held);
  }

  private spawnFailed(generation: Generation, index: number, error: unknown, held = true): void {
    const restartInMs =
      held && generation === this.current
        ? this.slotLost({ generation, index, startedAt: Date.now() })
        : undefined;
    logCode(
      this.logger,
      'UNHITCH_WORKER_SPAWN',
      { worker: index, generation: generation.id, err: error, restartInMs },
      restartInMs === undefined
        ? 'cannot create worker process'
        : 'cannot create worker process; retrying',
    );
  }

  /** True while `worker` is its generation's worker for its slot, and that generation serves. */
  private holdsSlot(worker: Worker, meta: WorkerMeta): boolean {
    return meta.generation === this.current && this.current.workers.get(meta.index) === worker;
  }

  private settle(meta: WorkerMeta, ok: boolean): void {
    const settle = meta.settle;
    meta.settle = undefined;
    settle?.(ok);
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
      bans: this.bans(),
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

  /**
   * A slot of the current generation has no worker: it died, or could not be forked.
   * Restarted after a delay that doubles while it keeps dying young (restart-policy.ts);
   * returns that delay (undefined: stopping, no restart).
   */
  private slotLost(
    lost: Pick<WorkerMeta, 'generation' | 'index' | 'startedAt'>,
  ): number | undefined {
    const { generation, index } = lost;
    generation.workers.delete(index);
    if (this.halted) return undefined;
    const delay = restartDelayMs(this.restartDelays.get(index), Date.now() - lost.startedAt);
    this.restartDelays.set(index, delay);
    // Clients the kernel hashes to this slot's socket queue there until a worker listens
    // on it again. Worth it for a quick restart; from a longer delay on (a crash loop, a
    // fork that keeps failing) the socket goes, so no client waits on a slot that may not
    // come back: with siblings, new clients reach them; with none (workers = 1) they are
    // refused at once rather than hang. The few already queued are reset. The
    // replacement gets a freshly bound socket.
    if (delay >= RELEASE_SOCKET_AFTER_MS && this.sockets.slotBound(index)) {
      this.sockets.closeSlot(index);
      this.logger.info(
        { worker: index, restartInMs: delay },
        'worker keeps crashing: its listening sockets closed until it is back',
      );
    }
    const timer = setTimeout(() => {
      this.pendingRestarts.delete(timer);
      if (this.halted || generation !== this.current || generation.workers.has(index)) return;
      void this.forkWorker(generation, index);
    }, delay);
    this.pendingRestarts.add(timer);
    return delay;
  }
}
