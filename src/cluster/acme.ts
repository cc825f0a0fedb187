/**
 * The primary's ACME duty: obtain the acme block's certificate, renew it at two thirds
 * of its lifetime (jittered), retry failures with a doubling back-off, store it with
 * pem-file permissions and hand it to the workers as a certificate reload (a new
 * generation; open connections stay on the old one). tls-alpn-01 challenges are put up
 * in every serving worker (acknowledged before the CA is asked to look), http-01 on the
 * primary's own plain-HTTP listener.
 *
 * Failures are loud and safe: a failed order is one UNHITCH_ACME_FAILED line with the
 * reason and the next attempt, and the last good certificate keeps serving.
 */
import type { Worker } from 'node:cluster';
import { X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import { HttpChallengeServer } from '../acme/http-challenge.js';
import { AcmeOrderError, type ChallengeHooks, obtainCertificate } from '../acme/issuer.js';
import { MAX_TIMER_MS, renewalTimeMs, retryDelayMs } from '../acme/schedule.js';
import { AcmeStore, AcmeStoreError } from '../acme/store.js';
import type { AcmeConfig } from '../config/model.js';
import { logCode } from '../errors.js';
import { storedAcmeCertificate } from '../tls/acme-material.js';
import type { Supervisor } from './supervisor.js';

/**
 * How long the workers get to confirm a tls-alpn-01 challenge before the CA is asked
 * anyway. Confirmations take milliseconds; the wait is long because asking too early
 * costs a failed validation, which CAs count against rate limits.
 */
const CHALLENGE_CONFIRM_MS = 30_000;

export interface AcmeManagerOptions {
  readonly logger: Logger;
  readonly supervisor: Supervisor;
  /** Start a certificate reload (a new generation with freshly loaded certificates). */
  readonly reloadCertificates: () => Promise<void>;
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
  private http: HttpChallengeServer | undefined;
  private nextChallengeId = 1;
  private readonly confirmations = new Map<number, PendingConfirmation>();
  /** tls-alpn-01 challenges open now, for workers that start while they are (reload, restart). */
  private readonly openChallenges = new Map<string, { cert: Buffer; key: Buffer }>();
  constructor(private readonly options: AcmeManagerOptions) {
    this.logger = options.logger.child({ component: 'acme' });
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
    if (
      JSON.stringify(previous?.httpListen) !== JSON.stringify(config?.httpListen) ||
      config?.challenge !== 'http-01'
    ) {
      await this.http?.stop();
      this.http = undefined;
    }
    if (config?.challenge === 'http-01' && this.http === undefined && config.httpListen) {
      const server = new HttpChallengeServer(config.httpListen);
      try {
        const port = await server.listen();
        this.http = server;
        this.logger.info({ port }, 'http-01 challenge listener up');
      } catch (error) {
        logCode(
          this.logger,
          'UNHITCH_ACME_FAILED',
          { err: error },
          'cannot listen for http-01 challenges; orders will fail until a reload fixes http-listen',
        );
      }
    }
    if (JSON.stringify(previous) === JSON.stringify(config)) return;
    this.failures = 0;
    this.clearTimer();
    if (config !== undefined) this.scheduleFromStore(config);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.clearTimer();
    for (const pending of this.confirmations.values()) pending.done();
    await this.http?.stop();
    this.http = undefined;
  }

  /** When the stored certificate is due, or now when there is none that covers every name. */
  private scheduleFromStore(config: AcmeConfig): void {
    const stored = storedAcmeCertificate(config, (message) =>
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
      const obtained = await obtainCertificate(config, store.accountKey(), this.hooks());
      store.saveCertificate(obtained.key, obtained.chain);
      if (this.stopped || this.config !== config) return;
      this.failures = 0;
      const renewAtMs = renewalTimeMs(obtained, Math.random());
      this.logger.info(
        {
          domains: config.domains,
          notAfter: new Date(obtained.notAfterMs).toISOString(),
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

  private hooks(): ChallengeHooks {
    return {
      openTlsAlpn: (name, cert, key) => this.broadcastChallenge(name, cert, key),
      closeTlsAlpn: (name) => this.broadcastChallenge(name, undefined, undefined),
      openHttp: (token, keyAuthorization) => {
        if (this.http === undefined) throw new Error('no http-01 listener');
        this.http.open(token, keyAuthorization);
      },
      closeHttp: (token) => this.http?.close(token),
    };
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
