/**
 * One listening frontend: a tls.Server, optionally behind a PROXY-header reader
 * (Hitch's proxy-proxy), reporting each accepted socket, each handshake and each
 * handshake failure with a reason.
 */

import { once } from 'node:events';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket, type TlsOptions } from 'node:tls';
import type { TcpAddress } from '../config/model.js';
import { UnhitchError } from '../errors.js';
import type { ConnectionFailureReason } from './events.js';
import { type ProxyEndpoints, ProxyHeaderReader } from './proxy-protocol.js';

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
  /** accept(2) failed, e.g. EMFILE; the server keeps listening. */
  onAcceptError(error: NodeJS.ErrnoException): void;
}

export interface FrontendOptions {
  readonly address: TcpAddress;
  readonly tls: TlsOptions;
  readonly handshakeTimeoutMs: number;
  /** TCP keepalive idle seconds for accepted sockets; 0 = off. */
  readonly keepaliveSec: number;
  readonly proxyProxy: boolean;
  readonly backlog: number;
  /** false in cluster workers: share the primary's listening socket. */
  readonly exclusive: boolean;
}

const MAX_PROXY_HEADER_BYTES = 536; // v2 header with generous TLVs; v1 is ≤ 107

export function clientErrorReason(error: NodeJS.ErrnoException): ConnectionFailureReason {
  const code = error.code ?? '';
  if (code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return 'handshake_timeout';
  if (code === 'UNHITCH_SNI_NOMATCH' || /callback failed/i.test(error.message))
    return 'sni_nomatch';
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

export class Frontend {
  private readonly tlsServer;
  private readonly listener: Server;
  private readonly accepted = new WeakMap<Socket, AcceptedSocket>();

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
    // Half-open only once secure: a FIN during the handshake must end it at once (node
    // then reports 'socket hang up'), not wait for the handshake timeout.
    this.tlsServer = createTlsServer({
      ...options.tls,
      ...acceptOptions,
      allowHalfOpen: false,
      handshakeTimeout: options.handshakeTimeoutMs,
    });
    this.tlsServer.on('secureConnection', (socket: TLSSocket) => {
      socket.allowHalfOpen = true;
      const parent = (socket as TLSSocket & { _parent?: Socket })._parent;
      const accepted = (parent && this.accepted.get(parent)) ?? {
        acceptedAt: performance.now(),
        endpoints: socketEndpoints(socket),
      };
      // Secure first: a drain waiting for idle must find this connection in one set or the other.
      handlers.onSecure(socket, accepted);
      if (parent) handlers.onHandshakeSettled(parent);
    });
    this.tlsServer.on('tlsClientError', (error: NodeJS.ErrnoException, socket: TLSSocket) => {
      const parent = (socket as TLSSocket & { _parent?: Socket })._parent;
      const endpoints = parent ? this.accepted.get(parent)?.endpoints : undefined;
      socket.destroy();
      if (parent) handlers.onHandshakeSettled(parent);
      handlers.onClientError(clientErrorReason(error), error, endpoints);
    });

    if (options.proxyProxy) {
      this.listener = createNetServer(
        { ...acceptOptions, allowHalfOpen: false, pauseOnConnect: false },
        (raw) => this.readProxyHeader(raw),
      );
    } else {
      this.listener = this.tlsServer;
      // Runs before tls.Server's own listener (prepend): the TLSSocket made there finds the times.
      this.tlsServer.prependListener('connection', (raw: Socket) =>
        this.noteAccepted(raw, socketEndpoints(raw)),
      );
    }
    this.listener.on('error', (error: NodeJS.ErrnoException) => {
      if (error.syscall === 'accept') handlers.onAcceptError(error);
    });
  }

  private noteAccepted(raw: Socket, endpoints: ProxyEndpoints): void {
    this.accepted.set(raw, { acceptedAt: performance.now(), endpoints });
    this.handlers.onAccepted(raw);
  }

  /** proxy-proxy: the PROXY header precedes the ClientHello; TLS starts on what follows. */
  private readProxyHeader(raw: Socket): void {
    const acceptedAt = performance.now();
    const reader = new ProxyHeaderReader(MAX_PROXY_HEADER_BYTES);
    const timer = setTimeout(() => {
      const error = new UnhitchError('UNHITCH_PROXY_HEADER_TIMEOUT', 'no PROXY header in time');
      cleanup();
      raw.destroy();
      this.handlers.onClientError('proxy_header_timeout', error, socketEndpoints(raw));
    }, this.options.handshakeTimeoutMs);
    const onError = (error: Error): void => {
      cleanup();
      raw.destroy();
      this.handlers.onClientError('client_reset', error, socketEndpoints(raw));
    };
    const onData = (chunk: Buffer): void => {
      let parsed: ReturnType<ProxyHeaderReader['push']>;
      try {
        parsed = reader.push(chunk);
      } catch (error) {
        cleanup();
        raw.destroy();
        this.handlers.onClientError('proxy_header_invalid', error as Error, socketEndpoints(raw));
        return;
      }
      if (parsed === undefined) return;
      cleanup();
      raw.pause();
      if (parsed.rest.length > 0) raw.unshift(parsed.rest);
      // LOCAL / UNKNOWN headers (health checks) carry no addresses: use the socket's.
      this.accepted.set(raw, {
        acceptedAt,
        endpoints: parsed.endpoints ?? socketEndpoints(raw),
        proxyHeader: parsed.header,
      });
      this.handlers.onAccepted(raw);
      this.tlsServer.emit('connection', raw);
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      raw.removeListener('data', onData);
      raw.removeListener('error', onError);
    };
    raw.on('data', onData);
    raw.on('error', onError);
  }

  async listen(): Promise<void> {
    const { address, backlog, exclusive } = this.options;
    this.listener.listen({
      host: address.host ?? '::',
      port: address.port,
      backlog,
      exclusive,
      ipv6Only: false,
    });
    await once(this.listener, 'listening');
  }

  address(): TcpAddress {
    const info = this.listener.address();
    if (info === null || typeof info === 'string') throw new Error('frontend is not listening');
    return { kind: 'tcp', host: info.address, port: info.port };
  }

  /** Stop accepting; established connections are not touched. */
  stopAccepting(): void {
    if (this.listener.listening) this.listener.close();
  }

  /** Accept again after a pause (fd exhaustion back-off); same address, same options. */
  async resumeAccepting(): Promise<void> {
    if (!this.listener.listening) await this.listen();
  }

  setTicketKeys(key: Buffer): void {
    this.tlsServer.setTicketKeys(key);
  }
}
