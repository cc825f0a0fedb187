/**
 * Prometheus metrics for a clustered proxy.
 *
 * Each worker owns a private `Registry` fed by a `ProxyObserver`; the primary (which never
 * serves traffic) produces the answer to `GET /metrics` by asking every worker for its
 * registry over the cluster IPC channel and summing them (prom-client's
 * `AggregatorRegistry`). The HTTP request itself is read by the unprivileged services
 * process (ops/metrics-http.ts), which asks the primary for that text. Counters and
 * histograms are summed per label set, so totals are exact across workers; per-process
 * series (CPU, event-loop delay) carry a `worker` label so they stay apart instead of being
 * averaged into meaningless numbers.
 */

import {
  AggregatorRegistry,
  Counter,
  collectDefaultMetrics,
  Gauge,
  Histogram,
  type PrometheusContentType,
  Registry,
} from 'prom-client';
import type { TcpAddress } from '../config/model.js';
import { UnhitchError } from '../errors.js';
import { isLoopback, parseIp } from '../net/ip.js';
import { bindReusePort, type ListenHandle, resolveBindHost } from '../net/listen-socket.js';
import type {
  AcceptPauseReason,
  ConnectionFailureReason,
  ConnectionTotals,
  HandshakeInfo,
  ProxyObserver,
  RefusalReason,
} from '../proxy/events.js';
import { suppressedFailureLines } from './failure-log.js';
import type { Logger } from './log.js';
import { type MetricsAnswer, MetricsHttpServer } from './metrics-http.js';
import { droppedSyslogLines } from './syslog.js';

export const METRIC_PREFIX = 'unhitch_';

/**
 * Every failure reason, so each series exists (at 0) from the first scrape: `rate()` and
 * alerts on a series that appears only after the first failure miss that failure.
 */
export const CONNECTION_FAILURE_REASONS = [
  'handshake_timeout',
  'handshake_error',
  'not_tls',
  'sni_nomatch',
  'acme_challenge_refused',
  'client_hello_too_large',
  'client_cert_missing',
  'client_cert_rejected',
  'proxy_header_invalid',
  'proxy_header_timeout',
  'proxy_header_incomplete',
  'backend_connect_timeout',
  'backend_refused',
  'backend_error',
  'backend_source_exhausted',
  'fd_exhausted',
  'request_head_too_large',
  'request_invalid',
  'request_head_timeout',
  'idle_timeout',
  'client_info_invalid',
  'client_reset',
  'shutdown',
] as const satisfies readonly ConnectionFailureReason[];

// Compile-time check that the list above names every reason in the union.
type MissingFailureReason = Exclude<
  ConnectionFailureReason,
  (typeof CONNECTION_FAILURE_REASONS)[number]
>;
const failureReasonListIsComplete: [MissingFailureReason] extends [never] ? true : never = true;
void failureReasonListIsComplete;

/** Every refusal reason, each series at 0 from the first scrape (as failure reasons). */
export const CONNECTION_REFUSAL_REASONS = [
  'per_ip_max_connections',
  'per_ip_rate',
  'denied',
  'repeat_offender',
] as const satisfies readonly RefusalReason[];

type MissingRefusalReason = Exclude<RefusalReason, (typeof CONNECTION_REFUSAL_REASONS)[number]>;
const refusalReasonListIsComplete: [MissingRefusalReason] extends [never] ? true : never = true;
void refusalReasonListIsComplete;

/** Every reason a worker pauses accepting for, each series at 0 from the first scrape. */
export const ACCEPT_PAUSE_REASONS = [
  'max_handshakes',
] as const satisfies readonly AcceptPauseReason[];

/**
 * Latency buckets in seconds: sub-millisecond for loopback backends up to the 30 s default
 * timeouts, so a timeout lands in a finite bucket rather than only in +Inf.
 */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = Object.freeze([
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
]);

export interface WorkerMetrics {
  /** Hand this to the data plane. */
  readonly observer: ProxyObserver;
  /** This worker's registry (already registered for cluster aggregation). */
  readonly registry: Registry<PrometheusContentType>;
}

export interface WorkerMetricsOptions {
  /** cluster.worker.id (or any stable per-worker number); becomes the `worker` label. */
  readonly workerId: number;
  /**
   * The live connection count, read at scrape time from the data plane's own sets
   * (TlsProxy.activeConnections) rather than derived from events: a count of accepts minus
   * closes drifts the moment one failure path forgets to report its close.
   */
  readonly activeConnections: () => number;
  /** Collect process CPU, memory and event-loop delay per worker. Default true. */
  readonly collectProcessMetrics?: boolean;
}

function millisecondsToSeconds(durationMs: number): number {
  return durationMs / 1000;
}

/**
 * Call once in each worker, before serving. Registers the worker's registry so it answers
 * the primary's aggregation requests (prom-client listens on `process.on('message')` for
 * its own message type; other message handlers must ignore those messages).
 */
export function createWorkerMetrics(options: WorkerMetricsOptions): WorkerMetrics {
  const registry = new Registry<PrometheusContentType>();
  const registers = [registry];

  new Gauge({
    name: `${METRIC_PREFIX}active_connections`,
    help: 'Client connections currently open (summed over workers).',
    registers,
    aggregator: 'sum',
    collect() {
      this.set(options.activeConnections());
    },
  });
  const acceptedTotal = new Counter({
    name: `${METRIC_PREFIX}connections_accepted_total`,
    help: 'Client connections accepted.',
    registers,
  });
  const closedTotal = new Counter({
    name: `${METRIC_PREFIX}connections_closed_total`,
    help: 'Client connections closed, successfully or not.',
    registers,
  });
  const abruptEndsTotal = new Counter({
    name: `${METRIC_PREFIX}client_abrupt_ends_total`,
    help: 'Connections the client reset with nothing in flight (a normal hang-up, not a failure).',
    registers,
  });
  const handshakesTotal = new Counter({
    name: `${METRIC_PREFIX}handshakes_total`,
    help: 'Completed TLS handshakes by kind (full or resumed session).',
    labelNames: ['kind'] as const,
    registers,
  });
  const failuresTotal = new Counter({
    name: `${METRIC_PREFIX}connection_failures_total`,
    help: 'Connections that ended badly, by reason.',
    labelNames: ['reason'] as const,
    registers,
  });
  const refusedTotal = new Counter({
    name: `${METRIC_PREFIX}connections_refused_total`,
    help: 'Connections closed at accept by a limit, by reason',
    labelNames: ['reason'] as const,
    registers,
  });
  const bytesTotal = new Counter({
    name: `${METRIC_PREFIX}bytes_total`,
    help: 'Payload bytes relayed, by direction (counted when the connection closes).',
    labelNames: ['direction'] as const,
    registers,
  });
  const backendConnectSeconds = new Histogram({
    name: `${METRIC_PREFIX}backend_connect_duration_seconds`,
    help: 'Time to establish the backend connection.',
    buckets: [...LATENCY_BUCKETS_SECONDS],
    registers,
  });
  const handshakeSeconds = new Histogram({
    name: `${METRIC_PREFIX}handshake_duration_seconds`,
    help: 'Time from accept to the end of the TLS handshake.',
    buckets: [...LATENCY_BUCKETS_SECONDS],
    registers,
  });

  const acceptPausesTotal = new Counter({
    name: `${METRIC_PREFIX}accept_pauses_total`,
    help: 'Times a worker stopped accepting (new clients wait in the listen backlog), by reason.',
    labelNames: ['reason'] as const,
    registers,
  });
  const acceptPausedSeconds = new Counter({
    name: `${METRIC_PREFIX}accept_paused_seconds_total`,
    help: 'Time workers spent not accepting, by reason (added when accepting resumes).',
    labelNames: ['reason'] as const,
    registers,
  });

  new Counter({
    name: `${METRIC_PREFIX}log_lines_dropped_total`,
    help:
      'Log lines not written, by cause: rate_limited (per-connection failure lines past ' +
      'the limit per reason, said in a summary line) or syslog_backlog (syslog not reading).',
    labelNames: ['cause'] as const,
    registers,
    collect() {
      // Counted where the lines are dropped (ops/failure-log.ts, ops/syslog.ts), which
      // runs before any registry exists.
      this.reset();
      this.inc({ cause: 'rate_limited' }, suppressedFailureLines());
      this.inc({ cause: 'syslog_backlog' }, droppedSyslogLines());
    },
  });

  handshakesTotal.inc({ kind: 'full' }, 0);
  handshakesTotal.inc({ kind: 'resumed' }, 0);
  for (const reason of CONNECTION_FAILURE_REASONS) failuresTotal.inc({ reason }, 0);
  for (const reason of CONNECTION_REFUSAL_REASONS) refusedTotal.inc({ reason }, 0);
  for (const reason of ACCEPT_PAUSE_REASONS) {
    acceptPausesTotal.inc({ reason }, 0);
    acceptPausedSeconds.inc({ reason }, 0);
  }
  bytesTotal.inc({ direction: 'client_to_backend' }, 0);
  bytesTotal.inc({ direction: 'backend_to_client' }, 0);

  if (options.collectProcessMetrics ?? true) {
    // prom-client's default set gives process_cpu_seconds_total and the
    // nodejs_eventloop_lag_* family (perf_hooks.monitorEventLoopDelay); the worker label
    // keeps each process its own series through aggregation.
    collectDefaultMetrics({
      register: registry,
      prefix: METRIC_PREFIX,
      labels: { worker: String(options.workerId) },
    });
  }

  const observer: ProxyObserver = {
    connectionAccepted() {
      acceptedTotal.inc();
    },
    handshakeCompleted(info: HandshakeInfo) {
      handshakesTotal.inc({ kind: info.resumed ? 'resumed' : 'full' });
      handshakeSeconds.observe(millisecondsToSeconds(info.durationMs));
    },
    backendConnected(durationMs: number) {
      backendConnectSeconds.observe(millisecondsToSeconds(durationMs));
    },
    connectionFailed(reason: ConnectionFailureReason) {
      failuresTotal.inc({ reason });
    },
    connectionRefused(reason: RefusalReason) {
      refusedTotal.inc({ reason });
    },
    clientLeftAbruptly() {
      abruptEndsTotal.inc();
    },
    acceptPaused(reason: AcceptPauseReason) {
      acceptPausesTotal.inc({ reason });
    },
    acceptResumed(reason: AcceptPauseReason, pausedMs: number) {
      acceptPausedSeconds.inc({ reason }, millisecondsToSeconds(pausedMs));
    },
    connectionClosed(totals: ConnectionTotals) {
      closedTotal.inc();
      bytesTotal.inc({ direction: 'client_to_backend' }, totals.clientToBackendBytes);
      bytesTotal.inc({ direction: 'backend_to_client' }, totals.backendToClientBytes);
    },
  };

  // The constructor installs prom-client's worker-side IPC listener (idempotent);
  // setRegistries makes it answer with our registry instead of the global one.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries(registry);

  return { observer, registry };
}

export type MetricsErrorCode = 'UNHITCH_METRICS_ADDRESS';

export class MetricsError extends UnhitchError<MetricsErrorCode> {
  constructor(code: MetricsErrorCode, message: string) {
    super(code, message);
    this.name = 'MetricsError';
  }
}

/**
 * The endpoint is unauthenticated and reveals traffic volumes, so it may only listen on
 * loopback; anything wider belongs behind a reverse proxy the operator controls.
 */
export function isLoopbackHost(host: string | undefined): boolean {
  if (host === undefined) return false;
  if (host === 'localhost') return true;
  const address = parseIp(host.replace(/^\[(.*)\]$/, '$1'));
  return address !== undefined && isLoopback(address);
}

export interface MetricsServer {
  readonly port: number;
  close(): Promise<void>;
}

export interface MetricsServerOptions {
  readonly address: TcpAddress;
  readonly logger: Logger;
  /** The certificates in service (the primary's expiry metric), read at each scrape. */
  readonly certificates?: () => readonly CertificateExpiry[];
}

/** One certificate in service, as the expiry metric names it. */
export interface CertificateExpiry {
  /** The first DNS name it covers (SAN, else CN). */
  readonly name: string;
  /** Where it came from: the pem-file path, or the ACME state file. */
  readonly source: string;
  readonly notAfterMs: number;
}

/**
 * The primary's own metric: one `unhitch_certificate_expiry_seconds{name,source}` series per
 * certificate in service, whatever issued it (pem-file, pem-dir, ACME), holding its
 * notAfter as Unix seconds, so `unhitch_certificate_expiry_seconds - time() < 14 * 86400`
 * alerts two weeks ahead. Read at each scrape, so it always shows the serving set.
 */
function certificateExpiryRegistry(
  certificates: () => readonly CertificateExpiry[],
): Registry<PrometheusContentType> {
  const registry = new Registry<PrometheusContentType>();
  new Gauge({
    name: `${METRIC_PREFIX}certificate_expiry_seconds`,
    help: 'When each certificate in service expires (notAfter), Unix time in seconds.',
    labelNames: ['name', 'source'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const certificate of certificates()) {
        this.set(
          { name: certificate.name, source: certificate.source },
          Math.floor(certificate.notAfterMs / 1000),
        );
      }
    },
  });
  return registry;
}

/**
 * The primary's side of a scrape: every worker's registry summed over cluster IPC, then
 * the primary's own registry (certificate expiry). Concurrent scrapes share one gather.
 */
export class MetricsExposition {
  private readonly aggregator = new AggregatorRegistry<PrometheusContentType>();
  private readonly primaryRegistry: Registry<PrometheusContentType> | undefined;
  private gathering: Promise<MetricsAnswer> | undefined;

  constructor(
    private readonly logger: Logger,
    certificates?: () => readonly CertificateExpiry[],
  ) {
    this.primaryRegistry =
      certificates === undefined ? undefined : certificateExpiryRegistry(certificates);
  }

  /** The exposition now (200), or a 500 answer; never rejects. */
  gather(): Promise<MetricsAnswer> {
    if (this.gathering !== undefined) return this.gathering;
    const gathering = Promise.all([
      this.aggregator.clusterMetrics(),
      this.primaryRegistry?.metrics() ?? '',
    ]).then(
      ([cluster, primary]) => ({
        status: 200,
        body: `${cluster}${primary}`,
        contentType: this.aggregator.contentType,
      }),
      (err: unknown) => {
        // Usually a worker that died mid-scrape; the next scrape will not wait for it.
        this.logger.warn({ err }, 'metrics aggregation failed');
        return { status: 500, body: 'metrics aggregation failed\n', contentType: 'text/plain' };
      },
    );
    this.gathering = gathering;
    void gathering.then(() => {
      this.gathering = undefined;
    });
    return gathering;
  }
}

/** Throws UNHITCH_METRICS_ADDRESS unless `address` is loopback; the host to bind, unbracketed. */
export function metricsHost(address: TcpAddress): string {
  if (address.host === undefined || !isLoopbackHost(address.host)) {
    throw new MetricsError(
      'UNHITCH_METRICS_ADDRESS',
      `metrics address ${address.host ?? '*'}:${address.port} is not loopback; ` +
        'the metrics endpoint is unauthenticated and only listens on 127.0.0.0/8, ::1 or localhost',
    );
  }
  return address.host.replace(/^\[(.*)\]$/, '$1');
}

/**
 * Bind the metrics address (loopback only) without listening, for the services process
 * to serve: the primary holds the socket, never reads from it.
 */
export async function bindMetricsSocket(
  address: TcpAddress,
): Promise<{ handle: ListenHandle; host: string; port: number }> {
  const host = metricsHost(address);
  try {
    // No SO_REUSEPORT: one process serves this port, and no other may share it.
    const { handle, port } = bindReusePort(await resolveBindHost(host), address.port, false);
    return { handle, host, port };
  } catch (error) {
    throw new MetricsError(
      'UNHITCH_METRICS_ADDRESS',
      `cannot bind the metrics address ${host}:${address.port}: ${(error as Error).message}`,
    );
  }
}

/**
 * The whole endpoint in one process (gather and serve): for a primary-side process that
 * serves no other client (tests). unhitch splits it: the primary binds and gathers
 * (bindMetricsSocket, MetricsExposition), the services process serves (MetricsHttpServer).
 * Rejects with code `UNHITCH_METRICS_ADDRESS` for a non-loopback address.
 */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { address, logger } = options;
  const host = metricsHost(address);
  const exposition = new MetricsExposition(logger, options.certificates);
  const server = new MetricsHttpServer(() => exposition.gather());
  const port = await server.listen({ host, port: address.port });
  logger.info({ host, port }, 'metrics endpoint listening');
  return { port, close: () => server.stop() };
}
