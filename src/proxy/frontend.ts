/**
 * One listening frontend: a tls.Server (one per client-certificate policy), optionally
 * behind a reader of what precedes TLS (Hitch's proxy-proxy header, the ClientHello's SNI
 * name), reporting each accepted socket, each handshake and each handshake failure with
 * a reason.
 */

import { once } from 'node:events';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import {
  createServer as createTlsServer,
  type TLSSocket,
  type Server as TlsServer,
} from 'node:tls';
import type { TcpAddress } from '../config/model.js';
import { UnhitchError } from '../errors.js';
import type { ListenHandle } from '../net/listen-socket.js';
import type { AcmeChallengeResponder } from '../tls/acme-challenge.js';
import type { FrontendTlsPlan, TlsServerPlan } from '../tls/contexts.js';
import type { ConnectionFailureReason, RefusalReason } from './events.js';
import type { ClientLimiter } from './limits.js';
import {
  type PreTlsHandlers,
  type PreTlsOptions,
  PreTlsReader,
  preTlsReaderOf,
} from './pre-tls-reader.js';
import type { ProxyEndpoints } from './proxy-protocol.js';

export interface AcceptedSocket {
  /** Monotonic ms (performance.now) at TCP accept: handshake latency starts here. */
  readonly acceptedAt: number;
  /** From the PROXY header under proxy-proxy, else from the socket itself. */
  readonly endpoints: ProxyEndpoints;
  /** proxy-proxy: the header as the client sent it, for passing on unchanged. */
  readonly proxyHeader?: Buffer;
}

export interface FrontendHandlers {
  /** TCP accept (before TLS). */
  onAccepted(raw: Socket): void;
  /** The handshake of `raw` ended, either way: it is no longer "handshaking". */
  onHandshakeSettled(raw: Socket): void;
  onSecure(socket: TLSSocket, accepted: AcceptedSocket): void;
  onClientError(
    reason: ConnectionFailureReason,
    error: Error,
    endpoints: ProxyEndpoints | undefined,
  ): void;
  /**
   * Closed at accept by a limit, before any TLS work. Without proxy-proxy it was never
   * reported accepted; with it, it was (its header had to be read) and has settled.
   */
  onRefused(reason: RefusalReason, endpoints: ProxyEndpoints): void;
  /** accept(2) failed, e.g. EMFILE; the server keeps listening. */
  onAcceptError(error: NodeJS.ErrnoException): void;
}

export interface FrontendOptions {
  readonly address: TcpAddress;
  /** One tls.Server per client-certificate policy, and how SNI picks one (contexts.ts). */
  readonly tls: FrontendTlsPlan;
  readonly handshakeTimeoutMs: number;
  /** TCP keepalive idle seconds for accepted sockets; 0 = off. */
  readonly keepaliveSec: number;
  readonly proxyProxy: boolean;
  readonly backlog: number;
  /**
   * Where the listening socket comes from. Unset: bind `address` here (one process,
   * tests). Set (cluster workers): a socket bound and kept open by someone else (the
   * primary); each call returns a fresh copy to listen on, so closing ours to pause
   * leaves the socket, and the clients queued in it, alive.
   */
  readonly acquireSocket?: () => Promise<ListenHandle>;
  /** The OCSP response to staple for a certificate (DER); absent = no stapling at all. */
  readonly ocspStaple?: (certificateDer: Buffer) => Buffer | undefined;
  /** ACME tls-alpn-01: answer `acme-tls/1` handshakes for open challenges (acme-challenge.ts). */
  readonly acmeChallenges?: AcmeChallengeResponder | undefined;
  /** Per-client limits (limits.ts), asked at accept; absent = none, no per-connection cost. */
  readonly limiter?: ClientLimiter | undefined;
}

export function clientErrorReason(
  error: NodeJS.ErrnoException,
  socket?: TLSSocket,
): ConnectionFailureReason {
  const code = error.code ?? '';
  if (code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return 'handshake_timeout';
  if (code === 'UNHITCH_SNI_NOMATCH' || /callback failed/i.test(error.message))
    return 'sni_nomatch';
  if (code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE') return 'client_cert_missing';
  // node destroyed the socket itself (rejectUnauthorized): the verify error is on it.
  if (socket?.authorizationError) return 'client_cert_rejected';
  if (code === 'ERR_SSL_HTTP_REQUEST' || code === 'ERR_SSL_WRONG_VERSION_NUMBER') return 'not_tls';
  if (code === 'ECONNRESET' || code === 'EPIPE') return 'client_reset';
  return 'handshake_error';
}

function socketEndpoints(socket: Socket): ProxyEndpoints {
  return {
    sourceAddress: socket.remoteAddress ?? '',
    sourcePort: socket.remotePort ?? 0,
    destinationAddress: socket.localAddress ?? '',
    destinationPort: socket.localPort ?? 0,
  };
}

/** The client key a counted connection holds a slot of (limits.ts), until its close. */
const CLIENT_SLOT = Symbol('unhitch.clientSlot');
type SlotSocket = Socket & { [CLIENT_SLOT]?: string };

function parentOf(socket: TLSSocket): Socket | undefined {
  return (socket as TLSSocket & { _parent?: Socket })._parent;
}

export class Frontend {
  private readonly tlsServers: TlsServer[];
  private readonly challengeServer: TlsServer | undefined;
  private readonly listener: Server;
  private readonly accepted = new WeakMap<Socket, AcceptedSocket>();
  /** Bumped by stopAccepting(): a listen() still fetching its socket then gives up. */
  private stopEpoch = 0;
  /** What is read before TLS, the same for every socket of this frontend. */
  private readonly preTlsOptions: PreTlsOptions;
  /** 'close' listener of every socket holding a limiter slot (`this` is the socket). */
  private readonly releaseSlot: (this: SlotSocket) => void;

  constructor(
    readonly options: FrontendOptions,
    private readonly handlers: FrontendHandlers,
  ) {
    // TCP_NODELAY and keepalive from accept on (net.Server sets them on each accepted
    // socket): the handshake's own flights then never wait behind Nagle's algorithm.
    const acceptOptions = {
      noDelay: true,
      keepAlive: options.keepaliveSec > 0,
      keepAliveInitialDelay: options.keepaliveSec * 1000,
    };
    this.preTlsOptions = {
      proxyHeader: options.proxyProxy,
      route: options.tls.route,
      acmeChallenges: options.acmeChallenges,
      handshakeTimeoutMs: options.handshakeTimeoutMs,
    };
    this.tlsServers = options.tls.servers.map((plan) => this.createTlsServer(plan, acceptOptions));
    const first = this.tlsServers[0];
    if (first === undefined) throw new Error('frontend has no TLS server');
    this.challengeServer =
      options.acmeChallenges === undefined
        ? undefined
        : this.createChallengeServer(options.acmeChallenges);

    const limiter = options.limiter;
    this.releaseSlot = function (this: SlotSocket): void {
      const key = this[CLIENT_SLOT];
      if (key !== undefined) limiter?.release(key);
    };
    if (
      options.proxyProxy ||
      options.tls.route !== undefined ||
      options.acmeChallenges !== undefined
    ) {
      // Bytes before the handshake are ours to read first: a PROXY header, the ClientHello.
      this.listener = createNetServer(
        { ...acceptOptions, allowHalfOpen: false, pauseOnConnect: false },
        (raw) => this.readBeforeTls(raw),
      );
    } else if (limiter !== undefined) {
      // Limits decide before tls.Server sees the socket: a refused one never becomes a
      // TLSSocket, so nothing is read from it and nothing written.
      this.listener = createNetServer(
        { ...acceptOptions, allowHalfOpen: false, pauseOnConnect: false },
        (raw) => {
          const endpoints = socketEndpoints(raw);
          if (!this.admit(raw, endpoints)) return;
          this.noteAccepted(raw, { acceptedAt: performance.now(), endpoints });
          first.emit('connection', raw);
        },
      );
    } else {
      this.listener = first;
      // Runs before tls.Server's own listener (prepend): the TLSSocket made there finds the times.
      first.prependListener('connection', (raw: Socket) =>
        this.noteAccepted(raw, { acceptedAt: performance.now(), endpoints: socketEndpoints(raw) }),
      );
    }
    this.listener.on('error', (error: NodeJS.ErrnoException) => {
      if (error.syscall === 'accept') handlers.onAcceptError(error);
    });
  }

  private createTlsServer(
    plan: TlsServerPlan,
    acceptOptions: { noDelay: boolean; keepAlive: boolean; keepAliveInitialDelay: number },
  ): TlsServer {
    const handlers = this.handlers;
    // Half-open only once secure: a FIN during the handshake must end it at once (node
    // then reports 'socket hang up'), not wait for the handshake timeout.
    const server = createTlsServer({
      ...plan.options,
      ...acceptOptions,
      allowHalfOpen: false,
      handshakeTimeout: this.options.handshakeTimeoutMs,
    });
    const staple = this.options.ocspStaple;
    if (staple !== undefined) {
      // Emitted only for clients that ask (status_request); the certificate is the one
      // SNI picked. No response means no staple, as with Hitch's status callback.
      server.on('OCSPRequest', (certificate: Buffer, _issuer: Buffer, callback) => {
        let response: Buffer | undefined;
        try {
          response = staple(certificate);
        } catch {
          response = undefined;
        }
        callback(null, response ?? null);
      });
    }
    server.on('secureConnection', (socket: TLSSocket) => {
      const parent = parentOf(socket);
      if (parent) this.endBudget(parent);
      if (plan.rejectPresentedUnverified && !socket.authorized) {
        if (socket.getPeerX509Certificate() !== undefined) {
          // client-verify = optional and a certificate that does not verify. This runs
          // inside OpenSSL's handshake-done callback, so destroying here, like node's own
          // rejectUnauthorized, keeps the server's last handshake flight from leaving.
          socket.destroy();
          if (parent) handlers.onHandshakeSettled(parent);
          const error = new UnhitchError(
            'UNHITCH_CLIENT_CERT_REJECTED',
            `client certificate does not verify: ${socket.authorizationError}`,
          );
          handlers.onClientError(
            'client_cert_rejected',
            error,
            parent ? this.accepted.get(parent)?.endpoints : undefined,
          );
          return;
        }
      }
      socket.allowHalfOpen = true;
      const accepted = (parent && this.accepted.get(parent)) ?? {
        acceptedAt: performance.now(),
        endpoints: socketEndpoints(socket),
      };
      // Secure first: a drain waiting for idle must find this connection in one set or the other.
      handlers.onSecure(socket, accepted);
      if (parent) handlers.onHandshakeSettled(parent);
    });
    server.on('tlsClientError', (error: NodeJS.ErrnoException, socket: TLSSocket) => {
      const parent = parentOf(socket);
      const endpoints = parent ? this.accepted.get(parent)?.endpoints : undefined;
      socket.destroy();
      if (parent && this.endBudget(parent)) return;
      if (parent) handlers.onHandshakeSettled(parent);
      handlers.onClientError(clientErrorReason(error, socket), error, endpoints);
    });
    return server;
  }

  /**
   * tls-alpn-01: the CA's validation handshake ends the connection; nothing is proxied.
   * It still counts as accepted and settled, so a drain sees it go.
   */
  private createChallengeServer(responder: AcmeChallengeResponder): TlsServer {
    const server = createTlsServer({
      ...this.options.tls.context,
      ...responder.serverOptions(this.options.handshakeTimeoutMs),
      allowHalfOpen: false,
    });
    server.on('secureConnection', (socket: TLSSocket) => {
      const parent = parentOf(socket);
      if (parent) this.endBudget(parent);
      // Settled when it closes (TlsProxy watches every accepted socket's close): until
      // then the socket is open and counts.
      socket.end();
    });
    server.on('tlsClientError', (error: NodeJS.ErrnoException, socket: TLSSocket) => {
      const parent = parentOf(socket);
      socket.destroy();
      if (parent && this.endBudget(parent)) return;
      if (parent) this.handlers.onHandshakeSettled(parent);
      this.handlers.onClientError(
        clientErrorReason(error, socket),
        error,
        parent ? this.accepted.get(parent)?.endpoints : undefined,
      );
    });
    return server;
  }

  /**
   * The handshake of a socket read before TLS ended: stop its budget. True when the budget
   * had already run out (and the timeout was reported), so nothing more is to be said.
   */
  private endBudget(raw: Socket): boolean {
    return preTlsReaderOf(raw)?.handshakeEnded() ?? false;
  }

  /**
   * Ask the limiter about a new client (limits.ts); a refused socket is destroyed here,
   * before any byte is read or written, and reported. True: go on.
   */
  private admit(raw: Socket, endpoints: ProxyEndpoints): boolean {
    const admission = this.options.limiter?.admit(endpoints.sourceAddress);
    if (admission === undefined) return true;
    if (admission.refused !== undefined) {
      raw.destroy();
      this.handlers.onRefused(admission.refused, endpoints);
      return false;
    }
    if (admission.counted) {
      (raw as SlotSocket)[CLIENT_SLOT] = admission.key;
      raw.on('close', this.releaseSlot);
    }
    return true;
  }

  private noteAccepted(raw: Socket, accepted: AcceptedSocket): void {
    this.accepted.set(raw, accepted);
    this.handlers.onAccepted(raw);
  }

  /**
   * Before TLS starts (pre-tls-reader.ts): the PROXY header under proxy-proxy, then the
   * ClientHello when it picks the tls.Server or is refused. The socket is reported
   * accepted at once, so drain and destroy reach it while its header is on the way, and a
   * client that leaves early is reported when it leaves.
   */
  private readBeforeTls(raw: Socket): void {
    const endpoints = socketEndpoints(raw);
    // Behind proxy-proxy the client is the one the header names: asked once it is read.
    if (!this.options.proxyProxy && !this.admit(raw, endpoints)) return;
    this.noteAccepted(raw, { acceptedAt: performance.now(), endpoints });
    new PreTlsReader(raw, this.preTlsOptions, this.preTlsHandlers);
  }

  /** One object for every socket read before TLS: each call names its socket. */
  private readonly preTlsHandlers: PreTlsHandlers = {
    proxyHeaderRead: (raw, endpoints, header) => {
      const accepted = this.accepted.get(raw);
      if (accepted === undefined) return true;
      // LOCAL / UNKNOWN headers (health checks) carry no addresses: use the socket's, and
      // they are not limited (the load balancer is no client).
      this.accepted.set(raw, {
        acceptedAt: accepted.acceptedAt,
        endpoints: endpoints ?? accepted.endpoints,
        proxyHeader: header,
      });
      if (endpoints === undefined || this.admit(raw, endpoints)) return true;
      this.handlers.onHandshakeSettled(raw);
      return false;
    },
    handOver: (raw, target) => {
      const server =
        target === 'acme-challenge'
          ? this.challengeServer
          : (this.tlsServers[target] ?? this.tlsServers[0]);
      server?.emit('connection', raw);
    },
    failed: (raw, reason, error, settled) => {
      if (settled) this.handlers.onHandshakeSettled(raw);
      this.handlers.onClientError(reason, error, this.accepted.get(raw)?.endpoints);
    },
    closed: (raw) => this.handlers.onHandshakeSettled(raw),
    outOfBudget: (raw, error) => {
      this.handlers.onHandshakeSettled(raw);
      this.handlers.onClientError('handshake_timeout', error, this.accepted.get(raw)?.endpoints);
    },
  };

  async listen(): Promise<void> {
    const { address, backlog, acquireSocket } = this.options;
    if (acquireSocket) {
      const epoch = this.stopEpoch;
      const handle = await acquireSocket();
      // Stopped while the socket was on its way (drain, or a new back-off): stay stopped.
      if (epoch !== this.stopEpoch || this.listener.listening) {
        handle.close();
        return;
      }
      // listen(handle) is exclusive in a cluster worker too (node ≥ 22): no primary query.
      this.listener.listen(handle, backlog);
    } else {
      this.listener.listen({
        host: address.host ?? '::',
        port: address.port,
        backlog,
        exclusive: true,
        ipv6Only: false,
      });
    }
    // 'error' rejects (EADDRINUSE, EACCES, a handle that cannot listen).
    await once(this.listener, 'listening');
  }

  address(): TcpAddress {
    const info = this.listener.address();
    if (info === null || typeof info === 'string') throw new Error('frontend is not listening');
    return { kind: 'tcp', host: info.address, port: info.port };
  }

  /**
   * Stop accepting; established connections are not touched. With `acquireSocket` only
   * our copy of the socket closes: clients keep queueing in it until a listen() resumes.
   */
  stopAccepting(): void {
    this.stopEpoch += 1;
    if (this.listener.listening) this.listener.close();
  }

  /** Accept again after a pause (fd exhaustion back-off) on the same socket or address. */
  async resumeAccepting(): Promise<void> {
    if (!this.listener.listening) await this.listen();
  }

  setTicketKeys(key: Buffer): void {
    for (const server of this.tlsServers) server.setTicketKeys(key);
  }
}
