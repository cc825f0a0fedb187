/**
 * Worker process entry (cluster.setupPrimary exec's this file). Receives its own
 * listening sockets (bound by the primary, SO_REUSEPORT, one per frontend) and the start
 * message, drops privileges, and only then listens: no client byte is handled as root.
 * Then it follows the primary's orders; signals from the terminal are the primary's.
 */
import cluster from 'node:cluster';
import type { Logger } from 'pino';
import { logCode } from '../errors.js';
import type { ListenHandle } from '../net/listen-socket.js';
import { createChildLogger, reopenLog } from '../ops/log.js';
import { checkNotRootWorkers, dropPrivileges } from '../ops/privileges.js';
import { NOOP_OBSERVER, type ProxyObserver } from '../proxy/events.js';
import { TlsProxy } from '../proxy/proxy.js';
import { AcmeChallengeResponder } from '../tls/acme-challenge.js';
import { pinCaStore } from '../tls/ocsp.js';
import {
  type ClientBan,
  crossError,
  isPrimaryMessage,
  type PrimaryMessage,
  type WorkerMessage,
} from './messages.js';

if (!cluster.isWorker) {
  process.stderr.write(
    'unhitch: cluster/worker.js is started by the unhitch primary, not by hand\n',
  );
  process.exit(1);
}

// Ctrl-C reaches the whole process group; the primary decides how workers stop.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => {});

// node:cluster's worker calls process.exit(0) when its channel closes unexpectedly (the
// primary was SIGKILLed or crashed), before any other 'disconnect' listener runs: every
// open connection would be cut at once. Marked as an expected disconnect, the worker
// drains instead (the 'disconnect' listener at the end of this file).
(cluster.worker as NonNullable<typeof cluster.worker>).exitedAfterDisconnect = true;

let proxy: TlsProxy | undefined;
/** Set while start() runs: a drain that arrives meanwhile waits for it. */
let starting: Promise<void> | undefined;
let draining = false;
/** tls-alpn-01 challenges: made at start when the config has acme with that challenge. */
let acmeResponder: AcmeChallengeResponder | undefined;
/** Challenges opened before the start order arrived, applied when it does. */
const earlyChallenges = new Map<string, { cert: Buffer; key: Buffer }>();
/** When the running drain closes what is left (Infinity: it waits for ever). */
let drainDeadline = Number.POSITIVE_INFINITY;
let forcedClosed = 0;
/** Every proxy.drain() under way (a later, shorter order adds one). */
const drainRuns: Array<Promise<void>> = [];
/** The configured drain-timeout, known from the start order on. */
let drainTimeoutMs: number | undefined;
/** The newest ticket key, which may arrive while start() still runs. */
let ticketKey: Buffer | undefined;
let workerLogger: Logger | undefined;

/** `then` runs once the message has left (or could not be sent): exit there, not sooner. */
function send(message: WorkerMessage, then?: () => void): void {
  if (process.send === undefined || !process.connected) {
    then?.();
    return;
  }
  process.send(message, undefined, {}, () => then?.());
}

/**
 * Logs, once, the identity the worker accepts its first connection as: the evidence
 * that no client is handled as root when `user`/`group` are set.
 */
function reportFirstAccept(observer: ProxyObserver, logger: Logger): ProxyObserver {
  let reported = false;
  return {
    connectionAccepted: () => {
      if (!reported) {
        reported = true;
        logger.info(
          { uid: process.geteuid?.(), gid: process.getegid?.() },
          'first connection accepted',
        );
      }
      observer.connectionAccepted();
    },
    handshakeCompleted: (info) => observer.handshakeCompleted(info),
    backendConnected: (durationMs) => observer.backendConnected(durationMs),
    connectionFailed: (reason) => observer.connectionFailed(reason),
    connectionRefused: (reason) => observer.connectionRefused(reason),
    connectionClosed: (totals) => observer.connectionClosed(totals),
    clientLeftAbruptly: () => observer.clientLeftAbruptly(),
    acceptPaused: (reason) => observer.acceptPaused(reason),
    acceptResumed: (reason, pausedMs) => observer.acceptResumed(reason, pausedMs),
  };
}

/** Bans broadcast before the proxy exists (it is starting): given to it once it does. */
const earlyBans: ClientBan[] = [];

/** Sockets from the primary not yet listened on, and listens waiting for one. */
const arrivedSockets = new Map<number, ListenHandle>();
const socketWaiters = new Map<number, Array<(handle: ListenHandle) => void>>();

function socketArrived(frontend: number, handle: ListenHandle): void {
  const waiter = socketWaiters.get(frontend)?.shift();
  if (waiter) waiter(handle);
  else {
    arrivedSockets.get(frontend)?.close();
    arrivedSockets.set(frontend, handle);
  }
}

/** Our copy of frontend `frontend`'s socket: the one already here, else asked for. */
function listenSocket(frontend: number): Promise<ListenHandle> {
  const arrived = arrivedSockets.get(frontend);
  if (arrived) {
    arrivedSockets.delete(frontend);
    return Promise.resolve(arrived);
  }
  return new Promise((resolve) => {
    const waiters = socketWaiters.get(frontend) ?? [];
    waiters.push(resolve);
    socketWaiters.set(frontend, waiters);
    send({ type: 'unhitch:listen-socket-request', frontend });
  });
}

async function start(message: Extract<PrimaryMessage, { type: 'unhitch:start' }>): Promise<void> {
  const { config } = message;
  // Resolved by the primary: no account lookup (getent) in the worker.
  const logIdentity = process.getuid?.() === 0 ? message.identity : undefined;
  const logger = createChildLogger(
    config,
    { role: 'worker', worker: message.workerIndex, generation: message.generation },
    logIdentity,
  );
  workerLogger = logger;
  // Without a metrics endpoint nobody reads them: no per-connection histogram work, no
  // collectors (GC observer, event-loop delay timer) running in the worker, and
  // prom-client (a tenth of a second to load) is not even imported.
  const observer = reportFirstAccept(
    config.metrics === undefined
      ? NOOP_OBSERVER
      : (await import('../ops/metrics.js')).createWorkerMetrics({
          workerId: message.workerIndex,
          activeConnections: () => proxy?.activeConnections ?? 0,
        }).observer,
    logger,
  );
  const acme = config.acme;
  if (acme?.challenge === 'tls-alpn-01') {
    acmeResponder = new AcmeChallengeResponder(acme.domains);
    for (const [name, challenge] of earlyChallenges)
      acmeResponder.open(name, challenge.cert, challenge.key);
  }
  earlyChallenges.clear();
  try {
    // Root is needed no longer (sockets are bound by the primary, certificates and keys
    // are in this message), and from listen() on a client can connect.
    if (message.identity !== undefined && process.getuid?.() === 0) {
      // Verifying staples needs the CA store: read it while still root.
      if (message.certificates.some((material) => material.ocspVerifyStaple)) pinCaStore();
      dropPrivileges(message.identity);
    }
    // Hitch's last word in each child (hitch.c): never serve as root. The primary's
    // preflight refuses such a start already; this catches callers that skip it.
    if (process.geteuid?.() === 0) checkNotRootWorkers(undefined, true);
    proxy = await TlsProxy.start({
      config,
      acmeChallenges: acmeResponder,
      certificates: message.certificates,
      logger,
      observer,
      ticketKey: message.ticketKey,
      listenSocket,
      onBan: (client, untilMs) => send({ type: 'unhitch:ban', ban: { client, untilMs } }),
      bans: [...message.bans, ...earlyBans],
    });
    // Bans that came while it started (ban() again is harmless for those it had).
    for (const ban of earlyBans) proxy.ban(ban.client, ban.untilMs);
    earlyBans.length = 0;
  } catch (error) {
    logCode(logger, 'UNHITCH_WORKER_START', { err: error }, 'worker failed to start');
    // pino writes the log line out on 'exit' (ops/log.ts).
    send({ type: 'unhitch:start-failed', error: crossError(error) }, () => process.exit(1));
    return;
  }
  // A rotation while start() ran: its key arrived before there was a proxy to take it.
  if (ticketKey !== undefined && !ticketKey.equals(message.ticketKey))
    proxy.setTicketKey(ticketKey);
  logger.info({ addresses: proxy.addresses() }, 'worker listening');
  send({ type: 'unhitch:listening', addresses: proxy.addresses() });
}

/** Open (cert and key) or close a tls-alpn-01 challenge; false if this worker cannot serve it. */
function acmeChallenge(name: string, cert: Buffer | undefined, key: Buffer | undefined): boolean {
  const open = cert !== undefined && key !== undefined;
  if (proxy === undefined && acmeResponder === undefined) {
    if (open) earlyChallenges.set(name, { cert, key });
    else earlyChallenges.delete(name);
    return true;
  }
  if (acmeResponder === undefined) return false;
  if (!open) {
    acmeResponder.close(name);
    return true;
  }
  return acmeResponder.open(name, cert, key);
}

/**
 * Stop accepting and let connections finish for `graceMs` (null: no limit). A second
 * order can only shorten it (SIGTERM reaching an old generation still draining after a
 * reload); the first call reports and exits once nothing is left.
 */
async function drain(graceMs: number | null): Promise<void> {
  const deadline = graceMs === null ? Number.POSITIVE_INFINITY : Date.now() + graceMs;
  if (draining && deadline >= drainDeadline) return;
  const first = !draining;
  draining = true;
  drainDeadline = deadline;
  await starting;
  if (proxy) {
    drainRuns.push(
      proxy.drain(graceMs ?? Number.POSITIVE_INFINITY).then((result) => {
        forcedClosed += result.forcedClosed;
      }),
    );
  }
  if (!first) return;
  // A shorter drain ordered meanwhile is what closes the connections: report once every
  // run has counted what it closed.
  for (let seen = 0; seen < drainRuns.length; ) {
    seen = drainRuns.length;
    await Promise.all(drainRuns);
  }
  send({ type: 'unhitch:drained', forcedClosed }, () => process.exit(0));
}

process.on('message', (value: unknown, handle: unknown) => {
  if (!isPrimaryMessage(value)) return;
  switch (value.type) {
    case 'unhitch:listen-socket':
      if (handle) socketArrived(value.frontend, handle as ListenHandle);
      break;
    case 'unhitch:start':
      drainTimeoutMs = value.config.drainTimeoutMs;
      starting = start(value);
      break;
    case 'unhitch:ticket-key':
      ticketKey = value.key;
      proxy?.setTicketKey(value.key);
      workerLogger?.debug({ draining }, 'session ticket key received');
      break;
    case 'unhitch:drain':
      void drain(value.graceMs);
      break;
    case 'unhitch:reopen-log':
      if (workerLogger) reopenLog(workerLogger);
      break;
    case 'unhitch:bans':
      if (proxy === undefined) earlyBans.push(...value.bans);
      for (const ban of value.bans) proxy?.ban(ban.client, ban.untilMs);
      workerLogger?.debug({ bans: value.bans.length }, 'bans received');
      break;
    case 'unhitch:acme-challenge':
      send({
        type: 'unhitch:acme-challenge-done',
        id: value.id,
        accepted: acmeChallenge(value.name, value.cert, value.key),
      });
      break;
  }
});

send({ type: 'unhitch:hello' });

// The primary is gone (crashed or SIGKILLed): serve what is open for at most
// drain-timeout (as on SIGTERM), accept nothing new, then exit. Nobody would kill a
// worker that lingered, and no new worker could take its place. A worker not told to
// start yet holds no connection and exits at once.
process.on('disconnect', () => {
  // Already draining (an old generation after a reload, or a SIGTERM) with a sooner
  // deadline: that one holds, and the line says so.
  const graceMs = Math.max(0, Math.min(drainTimeoutMs ?? 0, drainDeadline - Date.now()));
  if (workerLogger !== undefined)
    logCode(
      workerLogger,
      'UNHITCH_PRIMARY_GONE',
      { graceMs, connections: proxy?.activeConnections ?? 0 },
      'primary gone: draining, then exiting',
    );
  void drain(graceMs);
});
