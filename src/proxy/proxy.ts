/**
 * The data plane of one process: every frontend of a config, the backend connector and
 * the set of live connections. Knows nothing of config syntax or of the cluster: a
 * worker (or a test) hands it a config model and certificate bytes.
 */

import type { X509Certificate } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { ProxyConfig, TcpAddress } from '../config/model.js';
import { logCode, type UnhitchCode } from '../errors.js';
import { fdHeadroom } from '../net/fd-headroom.js';
import type { ListenHandle } from '../net/listen-socket.js';
import { failureLog } from '../ops/failure-log.js';
import type { AcmeChallengeResponder } from '../tls/acme-challenge.js';
import {
  CertificateSelector,
  certificatesForFrontend,
  type FrontendTlsPolicy,
  frontendTlsPlan,
} from '../tls/contexts.js';
import type { CertificateMaterial } from '../tls/material.js';
import { loadCaStore } from '../tls/ocsp.js';
import { StapleStore } from '../tls/staples.js';
import { BackendConnector } from './backend.js';
import { BackendResolver, type HostLookup, systemLookup } from './backend-resolver.js';
import { type ConnectionDeps, type ProxiedConnection, proxyConnection } from './connection.js';
import { NOOP_OBSERVER, type ProxyObserver } from './events.js';
import { Frontend } from './frontend.js';
import { HandshakeLimit } from './handshake-limit.js';
import { ClientLimiter, hasClientLimits } from './limits.js';
import { IDLE_SWEEPS_PER_TIMEOUT } from './splice.js';

export interface ProxyStartOptions {
  readonly config: ProxyConfig;
  readonly certificates: readonly CertificateMaterial[];
  readonly logger: Logger;
  readonly observer?: ProxyObserver;
  /** 48 bytes shared by every worker so tickets resume anywhere. */
  readonly ticketKey?: Buffer;
  /** How a backend name becomes an address (tests inject their own); default getaddrinfo. */
  readonly backendLookup?: HostLookup;
  /** ACME tls-alpn-01: challenges the frontends answer (the worker opens and closes them). */
  readonly acmeChallenges?: AcmeChallengeResponder | undefined;
  /**
   * Unset: each frontend binds its own address. Set (cluster workers): a copy of the
   * listening socket for frontend `index`, bound and kept open by the primary.
   */
  readonly listenSocket?: (frontendIndex: number) => Promise<ListenHandle>;
  /**
   * deny-repeat-offenders: this process banned `client` (an address, or an IPv6 prefix)
   * until `untilMs` (Date.now() time). A cluster worker tells the primary, which calls
   * `ban()` on every worker.
   */
  readonly onBan?: (client: string, untilMs: number) => void;
  /** Bans decided before this process started, in force from its first accept. */
  readonly bans?: ReadonlyArray<{ readonly client: string; readonly untilMs: number }>;
}

export interface DrainResult {
  /** Connections still open when the grace period ran out, then destroyed. */
  readonly forcedClosed: number;
}

type AcquireSocket = (frontendIndex: number) => Promise<ListenHandle>;

/**
 * Free descriptors needed before accepting again: an accept that hits EMFILE makes libuv
 * close every connection queued on the socket, so resume only with room for a burst
 * (each proxied connection takes two: client and backend).
 */
const RESUME_FD_HEADROOM = 16;
/** Fd exhaustion is logged at most this often, however many connections it hits. */
const FD_EXHAUSTED_LOG_INTERVAL_MS = 1000;
/** Accepting pauses this long after fd exhaustion, doubling while it persists. */
const ACCEPT_BACKOFF_MIN_MS = 100;
const ACCEPT_BACKOFF_MAX_MS = 2000;

/** How long a drain waits for the connections it destroyed to report their end. */
const DRAIN_SETTLE_MS = 1_000;

/** idle-timeout: one sweep of every connection per quarter timeout (see Splice.sweepIdle). */
function sweepIdle(proxy: TlsProxy): void {
  proxy.sweepIdleConnections();
}

export class TlsProxy {
  private readonly frontends: Frontend[] = [];
  private readonly connections = new Set<ProxiedConnection>();
  /** Accepted TCP sockets not yet secure: reading a PROXY header or handshaking. */
  private readonly opening = new Set<Socket>();
  private readonly connector: BackendConnector;
  private readonly connectionDeps: ConnectionDeps;
  private readonly resolver: BackendResolver | undefined;
  private staples: StapleStore | undefined;
  private readonly observer: ProxyObserver;
  /** Per-client limits; undefined when none is configured (nothing done per connection). */
  private readonly limiter: ClientLimiter | undefined;
  private lastFdLog = 0;
  private fdFailuresSinceLog = 0;
  private acceptBackoffMs = ACCEPT_BACKOFF_MIN_MS;
  private acceptPaused: NodeJS.Timeout | undefined;
  /** max-handshakes (undefined: no limit). */
  private handshakeLimit: HandshakeLimit | undefined;
  /** idle-timeout's one timer for the whole process (undefined: off). */
  private idleSweep: NodeJS.Timeout | undefined;
  private stopped = false;
  private idleWaiters: Array<() => void> = [];
  /** 'close' listener of every accepted socket. */
  private readonly rawClosed: (this: Socket) => void;

  private constructor(
    private config: ProxyConfig,
    private readonly logger: Logger,
    observer: ProxyObserver | undefined,
    backendLookup: HostLookup,
    onBan: ProxyStartOptions['onBan'],
  ) {
    this.observer = observer ?? NOOP_OBSERVER;
    this.limiter = hasClientLimits(config)
      ? new ClientLimiter(config, {
          banned: (client, untilMs) => {
            failureLog(logger).warn(
              {
                reason: 'repeat_offender_banned',
                code: 'UNHITCH_CLIENT_BANNED' satisfies UnhitchCode,
                client,
                until: new Date(untilMs).toISOString(),
              },
              'repeat offender: refused at accept until the ban ends',
            );
            onBan?.(client, untilMs);
          },
        })
      : undefined;
    const backend = config.backend;
    this.resolver =
      backend.kind === 'tcp' && backend.host !== undefined
        ? new BackendResolver(backend.host, config.backendRefreshSec, backendLookup, {
            onResolved: (host, address, previous) =>
              logger.info({ backend: host, address, previous }, 'backend address'),
            onResolveFailed: (host, error) =>
              logCode(
                logger,
                'UNHITCH_BACKEND_LOOKUP',
                { backend: host, err: error },
                'backend lookup failed; connecting to the last known address',
              ),
          })
        : undefined;
    this.connector = new BackendConnector({
      address: config.backend,
      ...(this.resolver === undefined ? {} : { resolver: this.resolver }),
      connectTimeoutMs: config.backendConnectTimeoutMs,
      sourceAddresses: config.backendSourceAddresses,
    });
    // One for every connection: built per connection, it was an object and a closure more
    // that each idle connection kept (bench/PERF-STEPS.md, Node 24 memory).
    this.connectionDeps = {
      connector: this.connector,
      settings: config,
      observer: this.observer,
      logger,
      onFdExhausted: () => this.fdExhausted(),
      connectionDone: (connection) => {
        this.connections.delete(connection);
        this.checkIdle();
      },
    };
    const settle = (raw: Socket): void => this.handshakeSettled(raw);
    // A listener function shared by every accepted socket (`this` is the socket): a closure
    // per socket was kept for the connection's life (bench/PERF-STEPS.md, Node 24 memory).
    this.rawClosed = function (this: Socket): void {
      settle(this);
    };
  }

  static async start(options: ProxyStartOptions): Promise<TlsProxy> {
    const proxy = TlsProxy.build(options, true);
    // Hitch resolves the backend before it serves; a failure is logged and the name is
    // then looked up per connection until a refresh finds it.
    await proxy.resolver?.start();
    try {
      await Promise.all(proxy.frontends.map((frontend) => frontend.listen()));
    } catch (error) {
      for (const frontend of proxy.frontends) frontend.stopAccepting();
      throw error;
    }
    return proxy;
  }

  /**
   * Everything start() does short of binding (and of resolving the backend, which Hitch
   * does not require either): the backend connector and, per frontend, the certificate
   * contexts and the tls.Server with its options (ciphers, curves, protocol range).
   * Throws what start() would throw for the same config; `--test` runs it so a config it
   * passes cannot fail in the workers for a TLS reason.
   */
  static check(options: ProxyStartOptions): void {
    TlsProxy.build(options, false);
  }

  private static build(options: ProxyStartOptions, serving: boolean): TlsProxy {
    const proxy = new TlsProxy(
      options.config,
      options.logger,
      options.observer,
      options.backendLookup ?? systemLookup,
      options.onBan,
    );
    for (const ban of options.bans ?? []) proxy.ban(ban.client, ban.untilMs);
    // OCSP staples are loaded (and their files watched) only by a proxy that serves;
    // a bad or missing staple is logged, never fatal, so check() has nothing to learn.
    if (serving) {
      proxy.staples = proxy.stapleStore(options.certificates);
      proxy.startLimits();
    }
    const frontendConfigs = options.config.frontends;
    for (let index = 0; index < frontendConfigs.length; index++) {
      const frontendConfig = frontendConfigs[index];
      if (frontendConfig === undefined) continue;
      const frontend = new Frontend(
        {
          address: frontendConfig.address,
          tls: proxy.tlsOptions(index, options.certificates, options.ticketKey),
          handshakeTimeoutMs: options.config.sslHandshakeTimeoutMs,
          keepaliveSec: options.config.keepaliveSec,
          proxyProxy: options.config.proxyProxy,
          backlog: options.config.backlog,
          ...(options.listenSocket
            ? { acquireSocket: () => (options.listenSocket as AcquireSocket)(index) }
            : {}),
          ...(proxy.staples === undefined
            ? {}
            : {
                ocspStaple: (certificate: Buffer) => proxy.staples?.stapleFor(certificate),
              }),
          acmeChallenges: options.acmeChallenges,
          limiter: proxy.limiter,
        },
        {
          onAccepted: (raw) => proxy.accepted(raw),
          onHandshakeSettled: (raw) => proxy.handshakeSettled(raw),
          onSecure: (socket, accepted) => proxy.secured(socket, accepted),
          onRefused: (reason, endpoints) => {
            proxy.observer.connectionRefused(reason);
            failureLog(proxy.logger).info(
              {
                reason,
                code: 'UNHITCH_CONNECTION_REFUSED' satisfies UnhitchCode,
                client: `${endpoints.sourceAddress}:${endpoints.sourcePort}`,
              },
              'connection refused',
            );
          },
          onClientError: (reason, error, endpoints) => {
            proxy.observer.connectionFailed(reason);
            if (endpoints !== undefined) proxy.limiter?.failed(endpoints.sourceAddress, reason);
            // A real reset mid-handshake (a read/write failing with ECONNRESET) is worth a
            // look; a FIN before the handshake ends ('socket hang up': TCP health checks,
            // probes) and the rest (scanners, plaintext, old protocols) is normal noise.
            const reset =
              reason === 'client_reset' && (error as NodeJS.ErrnoException).syscall !== undefined;
            failureLog(proxy.logger)[reset ? 'warn' : 'info'](
              {
                reason,
                client: endpoints
                  ? `${endpoints.sourceAddress}:${endpoints.sourcePort}`
                  : undefined,
                err: error,
              },
              'handshake failed',
            );
          },
          onAcceptError: () => proxy.fdExhausted(),
        },
      );
      proxy.frontends.push(frontend);
    }
    return proxy;
  }

  private tlsOptions(
    index: number,
    certificates: readonly CertificateMaterial[],
    ticketKey: Buffer | undefined,
  ) {
    const frontend = this.config.frontends[index];
    if (frontend === undefined) throw new Error(`no frontend ${index}`);
    const policy: FrontendTlsPolicy = {
      tlsProtos: frontend.tlsProtos,
      ciphers: frontend.ciphers,
      ciphersuites: frontend.ciphersuites,
      preferServerCiphers: frontend.preferServerCiphers,
      // Hitch: a frontend without pem-files of its own serves the global certificates
      // through the global SSL_CTX, whose servername callback knows only the global
      // sni-nomatch-abort; a frontend's own value counts where it has its own certificates.
      sniNomatchAbort:
        frontend.pemFiles.length > 0 ? frontend.sniNomatchAbort : this.config.tls.sniNomatchAbort,
      matchGlobalCerts: frontend.matchGlobalCerts,
      ecdhCurve: this.config.ecdhCurve,
      alpnProtos: this.config.alpnProtos,
    };
    const selector = new CertificateSelector(
      certificatesForFrontend(certificates, index, frontend.matchGlobalCerts),
      policy,
    );
    return frontendTlsPlan(selector, policy, ticketKey);
  }

  /** OCSP staples: cached in ocsp-dir by the primary, or a pem-file's ocsp-resp-file. */
  private stapleStore(certificates: readonly CertificateMaterial[]): StapleStore | undefined {
    const { ocspDir } = this.config;
    if (ocspDir === undefined && certificates.every((m) => m.ocspResponse === undefined)) {
      return undefined;
    }
    let trusted: X509Certificate[] = [];
    if (certificates.some((material) => material.ocspVerifyStaple)) {
      try {
        trusted = loadCaStore();
      } catch (error) {
        logCode(
          this.logger,
          'UNHITCH_OCSP_STAPLE_REJECTED',
          { err: error },
          'OCSP: no CA store; verified staples cannot be used',
        );
      }
    }
    const store = new StapleStore(certificates, ocspDir, trusted, {
      loaded: (source, status, from) =>
        this.logger.info({ cert: source, status, from }, 'OCSP staple loaded'),
      rejected: (source, from, error) =>
        logCode(
          this.logger,
          'UNHITCH_OCSP_STAPLE_REJECTED',
          { cert: source, from, err: error },
          'OCSP response not stapled',
        ),
    });
    if (store.stapleable === 0) return undefined;
    store.watch();
    return store;
  }

  /**
   * max-handshakes and idle-timeout, when set: nothing runs for them otherwise. The
   * handshake limit pauses by closing this process's copy of each listening socket: only
   * with `listenSocket` (a cluster worker, whose primary holds the sockets) do clients
   * then wait in the backlog; a proxy that bound its own address closes its port.
   */
  private startLimits(): void {
    const { maxHandshakes, idleTimeoutMs } = this.config;
    if (maxHandshakes > 0) {
      this.handshakeLimit = new HandshakeLimit(
        maxHandshakes,
        () => this.opening.size,
        {
          pause: () => {
            for (const frontend of this.frontends) frontend.stopAccepting();
          },
          resume: () => {
            // Fd exhaustion's back-off resumes by itself when it ends.
            if (this.acceptPaused === undefined && !this.stopped) this.resumeFrontends();
          },
        },
        this.observer,
        this.logger,
      );
    }
    if (idleTimeoutMs > 0) {
      this.idleSweep = setInterval(
        sweepIdle,
        idleTimeoutMs / IDLE_SWEEPS_PER_TIMEOUT,
        this,
      ).unref();
    }
  }

  sweepIdleConnections(): void {
    const idleTimeoutMs = this.config.idleTimeoutMs;
    for (const connection of this.connections) connection.sweepIdle(idleTimeoutMs);
  }

  private accepted(raw: Socket): void {
    this.observer.connectionAccepted();
    this.opening.add(raw);
    this.handshakeLimit?.opened();
    // Whatever path the handshake takes, a closed socket is no longer opening: the count
    // (and the active-connections gauge read from it) cannot keep a dead socket.
    raw.on('close', this.rawClosed); // emitted once: on() spares once()'s wrapper
  }

  private handshakeSettled(raw: Socket): void {
    if (!this.opening.delete(raw)) return;
    // Its close is no news any more (a secure connection is counted as a connection): node
    // listens to 'close' too, so ours kept a listener array per connection (PERF-STEPS).
    raw.removeListener('close', this.rawClosed);
    this.handshakeLimit?.settled();
    this.checkIdle();
  }

  private secured(
    socket: Parameters<typeof proxyConnection>[0],
    accepted: Parameters<typeof proxyConnection>[1],
  ): void {
    this.connections.add(proxyConnection(socket, accepted, this.connectionDeps));
  }

  /**
   * EMFILE/ENFILE (on accept or on the backend socket): keep serving what is open, stop
   * accepting for a while so new clients queue in the kernel instead of being accepted
   * and dropped, and log once per second with how many connections it cost. In a cluster
   * worker only this process's copy of the listening socket closes (the primary keeps
   * the socket), so even a lone worker's clients wait in the backlog, never refused.
   */
  private fdExhausted(): void {
    this.fdFailuresSinceLog += 1;
    const now = Date.now();
    if (now - this.lastFdLog >= FD_EXHAUSTED_LOG_INTERVAL_MS) {
      this.logger.error(
        {
          reason: 'fd_exhausted',
          failedConnections: this.fdFailuresSinceLog,
          active: this.activeConnections,
          pauseMs: this.acceptBackoffMs,
        },
        'out of file descriptors; pausing accept, existing connections keep being served',
      );
      this.lastFdLog = now;
      this.fdFailuresSinceLog = 0;
    }
    if (this.acceptPaused !== undefined || this.stopped) return;
    for (const frontend of this.frontends) frontend.stopAccepting();
    this.scheduleResume(this.acceptBackoffMs);
    this.acceptBackoffMs = Math.min(this.acceptBackoffMs * 2, ACCEPT_BACKOFF_MAX_MS);
    // A quiet second resets the back-off.
    setTimeout(() => {
      if (Date.now() - this.lastFdLog >= FD_EXHAUSTED_LOG_INTERVAL_MS)
        this.acceptBackoffMs = ACCEPT_BACKOFF_MIN_MS;
    }, ACCEPT_BACKOFF_MAX_MS * 2).unref();
  }

  /** Accept again after `delayMs`, or later while descriptors are still short. */
  private scheduleResume(delayMs: number): void {
    this.acceptPaused = setTimeout(() => {
      this.acceptPaused = undefined;
      if (this.stopped) return;
      if (fdHeadroom() < RESUME_FD_HEADROOM) {
        this.scheduleResume(Math.min(delayMs * 2, ACCEPT_BACKOFF_MAX_MS));
        return;
      }
      // max-handshakes still holds accepting off: it resumes when handshakes end.
      if (this.handshakeLimit?.paused) return;
      this.resumeFrontends();
    }, delayMs);
  }

  private resumeFrontends(): void {
    for (const frontend of this.frontends) {
      frontend.resumeAccepting().catch((error: Error) => {
        this.logger.error({ err: error }, 'cannot resume accepting; retrying');
        if (this.acceptPaused === undefined && !this.stopped) {
          for (const other of this.frontends) other.stopAccepting();
          this.scheduleResume(ACCEPT_BACKOFF_MAX_MS);
        }
      });
    }
  }

  addresses(): TcpAddress[] {
    return this.frontends.map((frontend) => frontend.address());
  }

  /**
   * Client connections open right now: spliced (or connecting to the backend) plus those
   * still reading a PROXY header or handshaking. The active-connections gauge reads this.
   */
  get activeConnections(): number {
    return this.connections.size + this.opening.size;
  }

  /** deny-repeat-offenders: a ban decided here or in another worker (Date.now() time). */
  ban(client: string, untilMs: number): void {
    this.limiter?.ban(client, untilMs);
  }

  setTicketKey(key: Buffer): void {
    for (const frontend of this.frontends) frontend.setTicketKeys(key);
  }

  stopAccepting(): void {
    this.stopped = true;
    this.resolver?.stop();
    this.staples?.close();
    clearTimeout(this.acceptPaused);
    this.handshakeLimit?.stop();
    for (const frontend of this.frontends) frontend.stopAccepting();
  }

  /** Stop accepting, wait for live connections to end, destroy what is left after graceMs. */
  async drain(graceMs: number): Promise<DrainResult> {
    this.stopAccepting();
    if (this.activeConnections === 0) return { forcedClosed: 0 };
    let timer: NodeJS.Timeout | undefined;
    const idle = new Promise<boolean>((resolve) => this.idleWaiters.push(() => resolve(true)));
    // setTimeout clamps huge delays to 1 ms: an unlimited grace must not become none.
    const timeout = new Promise<boolean>((resolve) => {
      if (Number.isFinite(graceMs)) timer = setTimeout(() => resolve(false), graceMs);
    });
    const wentIdle = await Promise.race([idle, timeout]);
    clearTimeout(timer);
    if (wentIdle) return { forcedClosed: 0 };
    const forcedClosed = this.activeConnections;
    this.destroy();
    // The destroyed connections end a tick later: let them log and count their end
    // before the caller (a worker about to exit) goes. Bounded, in case one never does.
    let settle: NodeJS.Timeout | undefined;
    await Promise.race([
      idle,
      new Promise((resolve) => {
        settle = setTimeout(resolve, DRAIN_SETTLE_MS);
      }),
    ]);
    clearTimeout(settle);
    return { forcedClosed };
  }

  destroy(): void {
    this.stopAccepting();
    clearInterval(this.idleSweep);
    for (const connection of this.connections) connection.destroy();
    for (const raw of this.opening) raw.destroy();
  }

  private checkIdle(): void {
    if (this.activeConnections > 0 || this.idleWaiters.length === 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const waiter of waiters) waiter();
  }
}
