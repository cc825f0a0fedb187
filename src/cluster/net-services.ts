/**
 * The services process: everything the primary did on the network besides forking
 * workers, now done as the configured user. The ACME order (the CA's HTTPS API), the
 * http-01 listener and the OCSP fetches (HTTP to the responders, parsing and checking
 * their DER) all read bytes an attacker may choose; the primary runs as root for its
 * whole life, so none of that may happen in it.
 *
 * Why one process of its own and not the workers: each of these duties must run once
 * (one ACME order, one fetch per certificate, one http-01 port), and workers come and go
 * by generations and restarts; putting them in "worker 0" would tie an order to a
 * worker a reload retires mid-order. A separate process also keeps the TLS data plane
 * free of the CA client (a fifth of a second to load) and of its failures.
 *
 * What stays with the primary: binding the http-01 port (it is privileged), the files
 * (account key, certificate store, ocsp-dir: written by root at fixed names, from the
 * checked result this process hands over; this process writes no file at all), the
 * tls-alpn-01 challenges in the workers, and the schedule.
 *
 * It is forked as root only to open its log as the workers do and read the CA stores
 * that may be root-only; it switches to `user`/`group` before any socket exists, and
 * refuses to carry on as root.
 */
import { createSecureContext } from 'node:tls';
import type { Logger } from 'pino';
import { HttpChallengeServer } from '../acme/http-challenge.js';
import { AcmeOrderError, type ChallengeHooks, obtainCertificate } from '../acme/issuer.js';
import { logCode } from '../errors.js';
import type { ListenHandle } from '../net/listen-socket.js';
import { createChildLogger, reopenLog } from '../ops/log.js';
import { checkNotRootWorkers, dropPrivileges } from '../ops/privileges.js';
import { loadCaStore, pinCaStore } from '../tls/ocsp.js';
import {
  OCSP_RETRY_BASE_MS,
  OCSP_RETRY_MAX_MS,
  OcspFetcher,
  type OcspFetcherEvents,
} from '../tls/ocsp-fetcher.js';
import {
  crossError,
  isServicesOrder,
  type OcspOrder,
  type ServicesOrder,
  type ServicesReport,
} from './messages.js';

type Order<T extends ServicesOrder['type']> = Extract<ServicesOrder, { type: T }>;

/** How long a request to the primary may take before the caller gives up on it. */
const PRIMARY_ANSWER_TIMEOUT_MS = 60_000;

interface Waiting {
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

class NetServices {
  private logger: Logger | undefined;
  private http: HttpChallengeServer | undefined;
  private fetcher: OcspFetcher | undefined;
  private nextId = 1;
  /** Requests to the primary (staple written, tls-alpn-01 challenge up), by id. */
  private readonly waiting = new Map<number, Waiting>();

  /** One handler per order: the protocol of this process, in one place. */
  handle(order: ServicesOrder, handle: unknown): void {
    switch (order.type) {
      case 'unhitch:services-start':
        this.start(order);
        break;
      case 'unhitch:http-challenge-listen':
        if (handle) void this.listenHttp(handle as ListenHandle);
        break;
      case 'unhitch:http-challenge-close':
        void this.closeHttp();
        break;
      case 'unhitch:ocsp-start':
        this.startOcsp(order.order);
        break;
      case 'unhitch:ocsp-stop':
        this.fetcher?.stop();
        this.fetcher = undefined;
        break;
      case 'unhitch:ocsp-saved':
      case 'unhitch:acme-tls-alpn-done':
        this.answered(order.id, order.error);
        break;
      case 'unhitch:acme-order':
        void this.order(order);
        break;
      case 'unhitch:reopen-log':
        if (this.logger) reopenLog(this.logger);
        break;
      case 'unhitch:services-stop':
        this.exit(0);
        break;
    }
  }

  private start(order: Order<'unhitch:services-start'>): void {
    const { config } = order;
    const identity = process.getuid?.() === 0 ? order.identity : undefined;
    const logger = createChildLogger(config, { role: 'services' }, identity);
    this.logger = logger;
    try {
      if (identity !== undefined) {
        // Trust stores that may be readable by root only, read before the switch: the
        // one OCSP responses are verified against, and node's roots plus
        // NODE_EXTRA_CA_CERTS for the CA's HTTPS (loaded with the first context).
        pinCaStore();
        createSecureContext();
        dropPrivileges(identity);
      }
      if (process.geteuid?.() === 0) checkNotRootWorkers(undefined, true);
    } catch (error) {
      logCode(logger, 'UNHITCH_SERVICES_DIED', { err: error }, 'services process cannot start');
      send({ type: 'unhitch:services-start-failed', error: crossError(error) }, () =>
        process.exit(1),
      );
      return;
    }
    logger.info({ uid: process.geteuid?.(), gid: process.getegid?.() }, 'services process ready');
    send({ type: 'unhitch:services-ready', uid: process.geteuid?.() });
  }

  private async listenHttp(handle: ListenHandle): Promise<void> {
    await this.closeHttp();
    const server = new HttpChallengeServer();
    try {
      const port = await server.listen(handle);
      this.http = server;
      send({ type: 'unhitch:http-challenge-listening', port });
    } catch (error) {
      send({ type: 'unhitch:http-challenge-failed', error: crossError(error) });
    }
  }

  private async closeHttp(): Promise<void> {
    const server = this.http;
    this.http = undefined;
    await server?.stop();
  }

  private startOcsp(order: OcspOrder): void {
    this.fetcher?.stop();
    const logger = this.logger?.child({ component: 'ocsp' });
    if (logger === undefined) return;
    const cached = new Map(order.certificates.map((c) => [c.source, c.cached]));
    let trusted: ReturnType<typeof loadCaStore> = [];
    if (order.certificates.some((c) => c.ocspVerifyStaple)) {
      try {
        trusted = loadCaStore();
      } catch (error) {
        // loadCertificates already refused this; keep fetching, verification will fail loudly.
        logCode(logger, 'UNHITCH_OCSP_INVALID', { err: error }, 'no CA store for OCSP');
      }
    }
    this.fetcher = new OcspFetcher(order.certificates, {
      cache: {
        read: (source) => cached.get(source),
        write: (source, response) => {
          const id = this.nextId++;
          const written = this.await(id);
          send({ type: 'unhitch:ocsp-response', id, source, response });
          return written.then(() => {
            cached.set(source, response);
          });
        },
      },
      connectTimeoutMs: order.connectTimeoutMs,
      responseTimeoutMs: order.responseTimeoutMs,
      refreshIntervalMs: order.refreshIntervalMs,
      retryBaseMs: OCSP_RETRY_BASE_MS,
      retryMaxMs: OCSP_RETRY_MAX_MS,
      trusted,
      events: ocspEvents(logger),
    });
    this.fetcher.start();
  }

  private async order(order: Order<'unhitch:acme-order'>): Promise<void> {
    const { id } = order;
    try {
      const obtained = await obtainCertificate(order.acme, order.accountKey, this.hooks());
      send({ type: 'unhitch:acme-order-done', id, key: obtained.key, chain: obtained.chain });
    } catch (error) {
      const reason = error instanceof AcmeOrderError ? error.reason : 'order_failed';
      // The library's error (the cause) is not cloneable: its words go into the message,
      // as pino's err serializer would have joined them.
      const crossed = { ...crossError(error), message: messageWithCauses(error) };
      send({ type: 'unhitch:acme-order-failed', id, error: crossed, reason });
    }
  }

  private hooks(): ChallengeHooks {
    const tlsAlpn = (name: string, cert?: Buffer, key?: Buffer): Promise<void> => {
      const id = this.nextId++;
      const done = this.await(id);
      send({ type: 'unhitch:acme-tls-alpn', id, name, cert, key });
      return done;
    };
    return {
      openTlsAlpn: (name, cert, key) => tlsAlpn(name, cert, key),
      closeTlsAlpn: (name) => tlsAlpn(name),
      openHttp: (token, keyAuthorization) => {
        if (this.http === undefined) throw new Error('no http-01 listener');
        this.http.open(token, keyAuthorization);
      },
      closeHttp: (token) => this.http?.close(token),
    };
  }

  /** The primary's answer to request `id`; it fails when none comes in time. */
  private await(id: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error('the primary did not answer'));
      }, PRIMARY_ANSWER_TIMEOUT_MS);
      timer.unref();
      this.waiting.set(id, {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
    });
  }

  private answered(id: number, error: string | undefined): void {
    const waiting = this.waiting.get(id);
    this.waiting.delete(id);
    if (error === undefined) waiting?.resolve();
    else waiting?.reject(new Error(error));
  }

  /** pino writes what is still buffered on 'exit' (ops/log.ts). */
  exit(code: number): void {
    this.fetcher?.stop();
    process.exit(code);
  }
}

/** Every fetch, failure (with the retry delay) and revoked status, as Hitch's OCSP process logs. */
function ocspEvents(logger: Logger): OcspFetcherEvents {
  return {
    fetched: (source, url, checked, nextFetchMs) => {
      const fields = {
        cert: source,
        responder: url,
        status: checked.status,
        nextUpdate: checked.nextUpdate?.toISOString(),
        refreshInSec: Math.round(nextFetchMs / 1000),
      };
      if (checked.status === 'good') logger.info(fields, 'OCSP response fetched');
      else
        logger.error(
          { ...fields, reason: checked.revocationReason },
          `OCSP: certificate status ${checked.status}`,
        );
    },
    failed: (source, url, error, attempt, retryMs) =>
      logCode(
        logger,
        'UNHITCH_OCSP_FETCH',
        {
          cert: source,
          responder: url,
          attempt,
          retryInSec: Math.round(retryMs / 1000),
          err: error,
        },
        'OCSP fetch failed; nothing new stapled, retrying',
      ),
    noResponder: (source) =>
      logger.debug({ cert: source }, 'OCSP: no responder in the certificate; nothing to fetch'),
  };
}

function messageWithCauses(error: unknown): string {
  let message = error instanceof Error ? error.message : String(error);
  let cause = error instanceof Error ? error.cause : undefined;
  for (let depth = 0; cause instanceof Error && depth < 5; depth++) {
    message += `: ${cause.message}`;
    cause = cause.cause;
  }
  return message;
}

function send(report: ServicesReport, then?: () => void): void {
  if (process.send === undefined || !process.connected) {
    then?.();
    return;
  }
  process.send(report, undefined, {}, () => then?.());
}

if (process.send === undefined) {
  process.stderr.write(
    'unhitch: cluster/net-services.js is started by the unhitch primary, not by hand\n',
  );
  process.exit(1);
}

// Ctrl-C reaches the whole process group; the primary decides when this process ends.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => {});

const services = new NetServices();
process.on('message', (value: unknown, handle: unknown) => {
  if (isServicesOrder(value)) services.handle(value, handle);
});
// Without the primary nothing here has a purpose (an order's result could not be stored).
process.on('disconnect', () => services.exit(0));
send({ type: 'unhitch:services-hello' });
