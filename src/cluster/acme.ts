/**
 * The primary's ACME duty: obtain the acme block's certificate, renew it at two thirds
 * of its lifetime (jittered), retry failures with a doubling back-off, store it with
 * pem-file permissions and hand it to the workers as a certificate reload (a new
 * generation; open connections stay on the old one). tls-alpn-01 challenges are put up
 * in every serving worker (acknowledged before the CA is asked to look), http-01 on a
 * plain-HTTP port the primary binds and the services process serves.
 *
 * The order itself (the CA's HTTPS API, JOSE, the http-01 listener) runs in the
 * unprivileged services process (cluster/net-services.ts): the primary sends it the
 * account key and gets back the key and chain, which the store checks before it
 * replaces the last good certificate. No byte from the CA or a validator reaches root.
 *
 * Failures are loud and safe: a failed order is one UNHITCH_ACME_FAILED line with the
 * reason and the next attempt, and the last good certificate keeps serving.
 */
import type { Worker } from 'node:cluster';
import { X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import { AcmeOrderError, type ObtainedCertificate } from '../acme/issuer.js';
import { MAX_TIMER_MS, renewalTimeMs, retryDelayMs } from '../acme/schedule.js';
import { AcmeStore, AcmeStoreError } from '../acme/store.js';
import type { AcmeConfig } from '../config/model.js';
import { logCode } from '../errors.js';
import { bindReusePort, type ListenHandle, resolveBindHost } from '../net/listen-socket.js';
import { reviveError, type ServicesReport } from './messages.js';
import type { ServicesProcess } from './services-process.js';
import type { Supervisor } from './supervisor.js';

/**
 * How long the workers get to confirm a tls-alpn-01 challenge before the CA is asked
 * anyway. Confirmations take milliseconds; the wait is long because asking too early
 * costs a failed validation, which CAs count against rate limits.
 */
const CHALLENGE_CONFIRM_MS = 30_000;
/**
 * Backstop for an order the services process neither finishes nor fails (its own
 * requests time out after 30 s each, its polling after about a minute).
 */
const ORDER_TIMEOUT_MS = 15 * 60_000;
/** An order due while the services process (re)starts waits this long for it. */
const SERVICES_READY_WAIT_MS = 30_000;

export interface AcmeManagerOptions {
  readonly logger: Logger;
  readonly supervisor: Supervisor;
  /** Where orders run and http-01 is served (as the configured user). */
  readonly services: ServicesProcess;
  /** Start a certificate reload (a new generation with freshly loaded certificates). */
  readonly reloadCertificates: () => Promise<void>;
}

interface PendingOrder {
  readonly resolve: (obtained: Pick<ObtainedCertificate, 'key' | 'chain'>) => void;
  readonly reject: (error: Error) => void;
}

interface PendingConfirmation {
  readonly waiting: Set<Worker>;
  refused: boolean;
  readonly done: () => void;
}

export class AcmeManager {
  private readonly logger: Logger;
  private config: AcmeConfig | undefined;
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private ordering = false;
  private stopped = false;
  /** The http-01 port, bound here (it may be privileged), served by the services process. */
  private http: { readonly key: string; readonly handle: ListenHandle } | undefined;
  private nextChallengeId = 1;
  private nextOrderId = 1;
  private readonly orders = new Map<number, PendingOrder>();
  private readonly confirmations = new Map<number, PendingConfirmation>();
  /** tls-alpn-01 challenges open now, for workers that start while they are (reload, restart). */
  private readonly openChallenges = new Map<string, { cert: Buffer; key: Buffer }>();
  constructor(private readonly options: AcmeManagerOptions) {
    this.logger = options.logger.child({ component: 'acme' });
    const { services } = options;
    services.on('unhitch:acme-order-done', (report) => this.orderSettled(report));
    services.on('unhitch:acme-order-failed', (report) => this.orderSettled(report));
    services.on('unhitch:acme-tls-alpn', (report) => this.tlsAlpnRequested(report));
    services.on('unhitch:http-challenge-listening', ({ port }) =>
      this.logger.info({ port }, 'http-01 challenge listener up'),
    );
    services.on('unhitch:http-challenge-failed', ({ error }) =>
      logCode(
        this.logger,
        'UNHITCH_ACME_FAILED',
        { err: reviveError(error) },
        'cannot serve http-01 challenges; orders will fail until a reload fixes http-listen',
      ),
    );
    // A restarted services process: the port again; an order it ran is lost.
    services.onReady(() => this.sendHttpSocket());
    services.onExit(() => {
      for (const order of this.orders.values())
        order.reject(new Error('the services process exited during the order'));
      this.orders.clear();
    });
  }

  /** After the first generation listens (tls-alpn-01 needs the frontends up). */
  async start(config: AcmeConfig | undefined): Promise<void> {
    await this.configure(config);
  }

  /** 'unhitch:listening': a worker of a new generation, or a restarted one, missed the open challenges. */
  workerListening(worker: Worker): void {
    if (this.stopped) return;
    for (const [name, { cert, key }] of this.openChallenges)
      this.options.supervisor.send(worker, {
        type: 'unhitch:acme-challenge',
        id: this.nextChallengeId++,
        name,
        cert,
        key,
      });
  }

  /** 'unhitch:acme-challenge-done': one worker confirmed (or refused) challenge `id`. */
  challengeDone(worker: Worker, id: number, accepted: boolean): void {
    const pending = this.confirmations.get(id);
    if (pending === undefined) return;
    if (!accepted) pending.refused = true;
    pending.waiting.delete(worker);
    if (pending.waiting.size === 0) pending.done();
  }

  /** On start and after every SIGHUP reload: follow the acme block as it now is. */
  async configure(config: AcmeConfig | undefined): Promise<void> {
    if (this.stopped) return;
    const previous = this.config;
    this.config = config;
    await this.configureHttp(config);
    if (JSON.stringify(previous) === JSON.stringify(config)) return;
    this.failures = 0;
    this.clearTimer();
    if (config !== undefined) this.scheduleFromStore(config);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.clearTimer();
    for (const pending of this.confirmations.values()) pending.done();
    this.closeHttp();
  }

  /** Bind (or keep, or close) the http-01 port as the acme block now asks. */
  private async configureHttp(config: AcmeConfig | undefined): Promise<void> {
    const wanted =
      config?.challenge === 'http-01' && config.httpListen !== undefined
        ? config.httpListen
        : undefined;
    const key = JSON.stringify(wanted);
    if (this.http?.key === key) return;
    this.closeHttp();
    if (wanted === undefined) return;
    try {
      // No SO_REUSEPORT: one process serves this port, and no other may share it.
      const { handle } = bindReusePort(await resolveBindHost(wanted.host), wanted.port, false);
      this.http = { key, handle };
      this.sendHttpSocket();
    } catch (error) {
      logCode(
        this.logger,
        'UNHITCH_ACME_FAILED',
        { err: error },
        'cannot listen for http-01 challenges; orders will fail until a reload fixes http-listen',
      );
    }
  }

  private sendHttpSocket(): void {
    if (this.http !== undefined)
      this.options.services.send({ type: 'unhitch:http-challenge-listen' }, this.http.handle);
  }

  private closeHttp(): void {
    if (this.http === undefined) return;
    this.options.services.send({ type: 'unhitch:http-challenge-close' });
    this.http.handle.close();
    this.http = undefined;
  }

  /** When the stored certificate is due, or now when there is none that covers every name. */
  private scheduleFromStore(config: AcmeConfig): void {
    const stored = new AcmeStore(config).stored((message) =>
      logCode(this.logger, 'UNHITCH_CERTIFICATE_WARNING', {}, message),
    );
    const covers =
      stored !== undefined && config.domains.every((name) => stored.names.includes(name));
    if (!covers || stored === undefined) {
      this.logger.info(
        { domains: config.domains },
        'no stored certificate covers the acme domains; ordering one',
      );
      this.schedule(0);
      return;
    }
    const validity = storedValidity(stored.cert);
    const renewAtMs = renewalTimeMs(validity, Math.random());
    this.logger.info(
      {
        domains: config.domains,
        notAfter: new Date(validity.notAfterMs).toISOString(),
        renewAt: new Date(renewAtMs).toISOString(),
      },
      'stored certificate in service',
    );
    this.schedule(renewAtMs - Date.now());
  }

  private schedule(delayMs: number): void {
    this.clearTimer();
    if (this.stopped) return;
    // Timers longer than node's limit are taken in steps.
    const step = Math.max(0, Math.min(delayMs, MAX_TIMER_MS));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (delayMs > MAX_TIMER_MS) this.schedule(delayMs - MAX_TIMER_MS);
      else void this.order();
    }, step);
    this.timer.unref();
  }

  private clearTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private async order(): Promise<void> {
    const config = this.config;
    if (config === undefined || this.ordering || this.stopped) return;
    this.ordering = true;
    try {
      await this.orderFor(config);
    } finally {
      this.ordering = false;
    }
    // The acme block changed (SIGHUP) while this order ran: what it scheduled was for the
    // old block, and an order the change asked for was skipped; start from the new one.
    if (!this.stopped && this.config !== config && this.config !== undefined)
      this.scheduleFromStore(this.config);
  }

  private async orderFor(config: AcmeConfig): Promise<void> {
    const store = new AcmeStore(config);
    try {
      const obtained = await this.orderInServices(config, store.accountKey());
      store.saveCertificate(obtained.key, obtained.chain);
      const validity = storedValidity(obtained.chain);
      if (this.stopped || this.config !== config) return;
      this.failures = 0;
      const renewAtMs = renewalTimeMs(validity, Math.random());
      this.logger.info(
        {
          domains: config.domains,
          notAfter: new Date(validity.notAfterMs).toISOString(),
          renewAt: new Date(renewAtMs).toISOString(),
          path: store.certificatePath,
        },
        'certificate obtained',
      );
      this.schedule(renewAtMs - Date.now());
      await this.options.reloadCertificates();
    } catch (error) {
      if (this.stopped || this.config !== config) return;
      this.failures++;
      const retryMs = retryDelayMs(this.failures, config.retrySec);
      const stored = error instanceof AcmeStoreError;
      const code = stored ? 'UNHITCH_ACME_STORE' : 'UNHITCH_ACME_FAILED';
      const reason = stored
        ? 'state_dir'
        : error instanceof AcmeOrderError
          ? error.reason
          : 'order_failed';
      logCode(
        this.logger,
        code,
        {
          err: error,
          reason,
          domains: config.domains,
          failures: this.failures,
          retryInSec: retryMs / 1000,
        },
        'ACME order failed; the last good certificate keeps serving',
      );
      this.schedule(retryMs);
    }
  }

  /** The order, run by the services process; rejects as the order failed there. */
  private orderInServices(
    config: AcmeConfig,
    accountKey: Buffer,
  ): Promise<Pick<ObtainedCertificate, 'key' | 'chain'>> {
    const id = this.nextOrderId++;
    const ready = this.options.services.whenReady(SERVICES_READY_WAIT_MS);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.orders.delete(id);
        reject(new AcmeOrderError('the order did not finish in 15 minutes', 'order_failed'));
      }, ORDER_TIMEOUT_MS);
      timer.unref();
      const settle =
        <T>(then: (value: T) => void) =>
        (value: T) => {
          clearTimeout(timer);
          this.orders.delete(id);
          then(value);
        };
      this.orders.set(id, { resolve: settle(resolve), reject: settle(reject) });
      void ready.then((isReady) => {
        const order = { type: 'unhitch:acme-order', id, acme: config, accountKey } as const;
        if (!isReady || !this.options.services.send(order))
          this.orders.get(id)?.reject(new Error('the services process is not running'));
      });
    });
  }

  private orderSettled(
    report: Extract<
      ServicesReport,
      { type: 'unhitch:acme-order-done' | 'unhitch:acme-order-failed' }
    >,
  ): void {
    const pending = this.orders.get(report.id);
    if (pending === undefined) return;
    if (report.type === 'unhitch:acme-order-done') {
      pending.resolve({ key: report.key, chain: report.chain });
      return;
    }
    const error = new AcmeOrderError(report.error.message, report.reason);
    error.stack = reviveError(report.error).stack;
    pending.reject(error);
  }

  /** The services process asks for a tls-alpn-01 challenge in the workers; it waits for the answer. */
  private tlsAlpnRequested(
    report: Extract<ServicesReport, { type: 'unhitch:acme-tls-alpn' }>,
  ): void {
    const answer = (error: string | undefined): void => {
      this.options.services.send({ type: 'unhitch:acme-tls-alpn-done', id: report.id, error });
    };
    this.broadcastChallenge(report.name, report.cert, report.key).then(
      () => answer(undefined),
      (error: Error) => answer(error.message),
    );
  }

  /**
   * Put a challenge up in (or take it down from) every worker of the serving generation,
   * and wait until each says it did: the CA may connect the moment it is told to look.
   */
  private async broadcastChallenge(
    name: string,
    cert: Buffer | undefined,
    key: Buffer | undefined,
  ): Promise<void> {
    const { supervisor } = this.options;
    if (cert !== undefined && key !== undefined) this.openChallenges.set(name, { cert, key });
    else this.openChallenges.delete(name);
    const workers = [...supervisor.current.workers.values()].filter(
      (worker) => supervisor.isGreeted(worker) && worker.isConnected(),
    );
    if (workers.length === 0) return;
    const id = this.nextChallengeId++;
    let timer: NodeJS.Timeout | undefined;
    const confirmed = new Promise<PendingConfirmation>((resolve) => {
      const pending: PendingConfirmation = {
        waiting: new Set(workers),
        refused: false,
        done: () => resolve(pending),
      };
      this.confirmations.set(id, pending);
      timer = setTimeout(() => resolve(pending), CHALLENGE_CONFIRM_MS);
    });
    for (const worker of workers)
      supervisor.send(worker, { type: 'unhitch:acme-challenge', id, name, cert, key });
    const startedAt = performance.now();
    const pending = await confirmed;
    clearTimeout(timer);
    this.confirmations.delete(id);
    this.logger.debug(
      {
        name,
        workers: workers.length,
        confirmMs: Math.round(performance.now() - startedAt),
      },
      cert === undefined ? 'tls-alpn-01 challenge closed' : 'tls-alpn-01 challenge open',
    );
    if (cert === undefined) return;
    if (pending.waiting.size > 0) {
      logCode(
        this.logger,
        'UNHITCH_ACME_CHALLENGE_UNCONFIRMED',
        { name, unconfirmed: pending.waiting.size },
        'workers did not confirm the tls-alpn-01 challenge in time; asking the CA anyway',
      );
    }
    if (pending.refused) throw new Error(`workers refused the tls-alpn-01 challenge for ${name}`);
  }
}

function storedValidity(cert: Buffer): { notBeforeMs: number; notAfterMs: number } {
  const leaf = new X509Certificate(cert);
  return { notBeforeMs: Date.parse(leaf.validFrom), notAfterMs: Date.parse(leaf.validTo) };
}
