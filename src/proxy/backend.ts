/**
 * Connections to the backend: TCP or unix socket, a real connect timeout (Hitch only
 * logs; we close the client, who would otherwise wait forever), and a rotating list of
 * local source addresses so one backend can take more than one address's ~28k ports.
 */

import { type OnReadOpts, Socket, type SocketConstructorOpts } from 'node:net';
import type { BackendAddress } from '../config/model.js';
import { UnhitchError } from '../errors.js';
import { isLoopback, parseIp } from '../net/ip.js';
import type { BackendResolver } from './backend-resolver.js';
import type { ConnectionFailureReason } from './events.js';

export interface BackendTarget {
  readonly address: BackendAddress;
  /** For a TCP backend given by name: its current address (backend-refresh). */
  readonly resolver?: BackendResolver;
  readonly connectTimeoutMs: number;
  /** Local addresses to connect from, used round robin; empty = let the kernel pick. */
  readonly sourceAddresses: readonly string[];
}

export interface BackendFailure {
  readonly reason: ConnectionFailureReason;
  readonly error: Error;
}

export function backendFailureReason(error: NodeJS.ErrnoException): ConnectionFailureReason {
  switch (error.code) {
    case 'ECONNREFUSED':
    case 'ENOENT': // unix socket path missing
      return 'backend_refused';
    case 'EADDRNOTAVAIL':
    case 'EADDRINUSE':
      return 'backend_source_exhausted';
    case 'EMFILE':
    case 'ENFILE':
      return 'fd_exhausted';
    case 'UNHITCH_BACKEND_CONNECT_TIMEOUT':
      return 'backend_connect_timeout';
    default:
      return 'backend_error';
  }
}

/**
 * Receives the backend's bytes straight from the read callback (net.Socket `onread`),
 * without a Buffer allocation, a Readable push and a 'data' event per read. The bytes are
 * `buffer[0, nread)`, valid only during the call; return false to stop reading (node
 * resumes on `socket.resume()`).
 */
export type BackendReadCallback = (this: Socket, nread: number, buffer: Uint8Array) => boolean;

/** What becomes of a connect: one of the two is called (see BackendConnector.connect). */
export interface BackendHandler {
  /** Connected after `connectMs` (monotonic). */
  backendConnected(connectMs: number): void;
  backendFailed(failure: BackendFailure): void;
}

/**
 * One read buffer for every backend socket of the process: libuv fills it for one socket
 * and the callback consumes it synchronously before the next read, so sharing is safe and
 * each read saves node's 64 KiB malloc + shrink of a fresh buffer.
 */
const BACKEND_READ_BUFFER = Buffer.allocUnsafeSlow(64 * 1024);

export class BackendConnector {
  private nextSource = 0;
  /** The backend host keepaliveUseful() last judged, and its answer. */
  private judgedHost: string | undefined = undefined;
  private judgedUseful = true;

  constructor(readonly target: BackendTarget) {}

  /**
   * A backend socket, not yet connected: `onRead` gets its bytes (there are no 'data'
   * events), called with the socket as `this`. allowHalfOpen: a backend's FIN must not
   * close our writing side towards it (half-close is relayed, not collapsed).
   */
  socket(onRead: BackendReadCallback): Socket {
    // node's Socket constructor takes `onread` and `noDelay` (net.connect passes them
    // there); @types/node only declares them on the connect options, where socket.connect()
    // ignores noDelay: given there, the backend leg silently kept Nagle's algorithm.
    const socketOptions: SocketConstructorOpts & { onread: OnReadOpts; noDelay: boolean } = {
      allowHalfOpen: true,
      noDelay: true,
      onread: { buffer: BACKEND_READ_BUFFER, callback: onRead },
    };
    return new Socket(socketOptions);
  }

  /**
   * Connects `socket` (from `socket()`). Exactly one of the handler's methods runs, unless
   * the caller destroys the socket first.
   */
  connect(socket: Socket, handler: BackendHandler): void {
    const started = performance.now();
    let settled = false;
    const timer = setTimeout(() => {
      const error = new UnhitchError(
        'UNHITCH_BACKEND_CONNECT_TIMEOUT',
        `backend did not accept within ${this.target.connectTimeoutMs} ms`,
      );
      fail(error);
    }, this.target.connectTimeoutMs);
    const fail = (error: NodeJS.ErrnoException): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      handler.backendFailed({ reason: backendFailureReason(error), error });
    };
    const clearTimer = (): void => clearTimeout(timer);
    socket.once('error', fail);
    socket.once('connect', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      // Nothing of the connect phase may outlive it: these listeners would keep this
      // scope (the cleared Timeout, the callbacks) for as long as the connection lasts.
      socket.removeListener('error', fail);
      socket.removeListener('close', clearTimer);
      handler.backendConnected(performance.now() - started);
    });
    socket.once('close', clearTimer);

    const address = this.target.address;
    if (address.kind === 'unix') {
      socket.connect({ path: address.path });
    } else {
      const localAddress = this.pickSource();
      socket.connect({
        host: this.target.resolver?.target ?? address.host ?? '127.0.0.1',
        port: address.port,
        ...(localAddress === undefined ? {} : { localAddress }),
      });
    }
  }

  /**
   * Whether TCP keepalive can tell anything on a connection to the backend: not over a unix
   * socket or loopback, where the kernel answers a hung backend's probes itself and a dead
   * backend's sockets close anyway. Hitch sets no keepalive on its backend socket at all;
   * skipping it saves four setsockopt(2) per connection (issue 24).
   */
  keepaliveUseful(): boolean {
    const address = this.target.address;
    if (address.kind === 'unix') return false;
    const host = this.target.resolver?.target ?? address.host ?? '127.0.0.1';
    if (host !== this.judgedHost) {
      const ip = parseIp(host);
      this.judgedHost = host;
      this.judgedUseful = ip === undefined || !isLoopback(ip);
    }
    return this.judgedUseful;
  }

  private pickSource(): string | undefined {
    const sources = this.target.sourceAddresses;
    if (sources.length === 0) return undefined;
    const source = sources[this.nextSource % sources.length];
    this.nextSource = (this.nextSource + 1) % sources.length;
    return source;
  }
}
