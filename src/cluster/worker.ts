/**
 * Worker process entry (cluster.setupPrimary exec's this file). Waits for the primary's
 * start message, runs one Proxy on the shared listening sockets, drops privileges, and
 * follows the primary's orders; signals from the terminal are the primary's to handle.
 */
import cluster from 'node:cluster';
import { logCode } from '../errors.js';
import { createLogger } from '../ops/log.js';
import { dropPrivileges, resolveIdentity } from '../ops/privileges.js';
import { NOOP_OBSERVER } from '../proxy/events.js';
import { TlsProxy } from '../proxy/proxy.js';
import { AcmeChallengeResponder } from '../tls/acme-challenge.js';
import {
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

let proxy: TlsProxy | undefined;
/** Set while start() runs: a drain that arrives meanwhile waits for it. */
let starting: Promise<void> | undefined;
let draining = false;
/** tls-alpn-01 challenges: made at start when the config has acme with that challenge. */
let acmeResponder: AcmeChallengeResponder | undefined;
/** Challenges opened before the start order arrived, applied when it does. */
const earlyChallenges = new Map<string, { cert: Buffer; key: Buffer }>();

/** `then` runs once the message has left (or could not be sent): exit there, not sooner. */
function send(message: WorkerMessage, then?: () => void): void {
  if (process.send === undefined || !process.connected) {
    then?.();
    return;
  }
  process.send(message, undefined, {}, () => then?.());
}

async function start(message: Extract<PrimaryMessage, { type: 'unhitch:start' }>): Promise<void> {
  const { config } = message;
  const logIdentity = identityForLogChild(config.user, config.group);
  const logger = createLogger({
    level: config.logLevel,
    quiet: config.quiet,
    filename: config.logFilename,
    bindings: { role: 'worker', worker: message.workerIndex, generation: message.generation },
    // logger(1) runs as the identity this worker is about to drop to.
    ...(config.syslog
      ? {
          syslog: { facility: config.syslogFacility, uid: logIdentity?.uid, gid: logIdentity?.gid },
        }
      : {}),
    // A daemon's stdout is /dev/null: without a file or syslog, nothing is written.
    console: !config.daemon,
  });
  // Without a metrics endpoint nobody reads them: no per-connection histogram work, no
  // collectors (GC observer, event-loop delay timer) running in the worker, and
  // prom-client (a tenth of a second to load) is not even imported.
  const observer =
    config.metrics === undefined
      ? NOOP_OBSERVER
      : (await import('../ops/metrics.js')).createWorkerMetrics({
          workerId: message.workerIndex,
          activeConnections: () => proxy?.activeConnections ?? 0,
        }).observer;
  const acme = config.acme;
  if (acme?.challenge === 'tls-alpn-01') {
    acmeResponder = new AcmeChallengeResponder(acme.domains);
    for (const [name, challenge] of earlyChallenges)
      acmeResponder.open(name, challenge.cert, challenge.key);
  }
  earlyChallenges.clear();
  try {
    proxy = await TlsProxy.start({
      config,
      acmeChallenges: acmeResponder,
      certificates: message.certificates,
      logger,
      observer,
      ticketKey: message.ticketKey,
      exclusive: false,
    });
    // Sockets are bound (by the primary) and keys are in memory: root is no longer needed.
    const identity = resolveIdentity(config.user, config.group);
    if (identity !== undefined && process.getuid?.() === 0) dropPrivileges(identity);
  } catch (error) {
    logCode(logger, 'UNHITCH_WORKER_START', { err: error }, 'worker failed to start');
    // pino writes the log line out on 'exit' (ops/log.ts).
    send({ type: 'unhitch:start-failed', error: crossError(error) }, () => process.exit(1));
    return;
  }
  logger.info({ addresses: proxy.addresses() }, 'worker listening');
  send({ type: 'unhitch:listening', addresses: proxy.addresses() });
}

/** The identity a root worker drops to, for its syslog child; undefined otherwise. */
function identityForLogChild(
  user: string | undefined,
  group: string | undefined,
): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    return resolveIdentity(user, group);
  } catch {
    // Reported by the privilege drop below, with its own error.
    return undefined;
  }
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

async function drain(graceMs: number | null): Promise<void> {
  if (draining) return;
  draining = true;
  await starting;
  const result = proxy
    ? await proxy.drain(graceMs ?? Number.POSITIVE_INFINITY)
    : { forcedClosed: 0 };
  send({ type: 'unhitch:drained', forcedClosed: result.forcedClosed }, () => process.exit(0));
}

process.on('message', (value: unknown) => {
  if (!isPrimaryMessage(value)) return;
  switch (value.type) {
    case 'unhitch:start':
      starting = start(value);
      break;
    case 'unhitch:ticket-key':
      proxy?.setTicketKey(value.key);
      break;
    case 'unhitch:drain':
      void drain(value.graceMs);
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

// The primary is gone (crashed or SIGKILLed): serve what is open, accept nothing new.
process.on('disconnect', () => {
  void drain(null);
});
