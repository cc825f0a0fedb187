/**
 * Connections to the backend: TCP or unix socket, a real connect timeout (Hitch only
 * logs; we close the client, who would otherwise wait forever), and a rotating list of
 * local source addresses so one backend can take more than one address's ~28k ports.
 */
import { Socket } from 'node:net';
import type { BackendAddress } from '../config/model.js';
import type { ConnectionFailureReason } from './events.js';

export interface BackendTarget {
  readonly address: BackendAddress;
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

export class BackendConnector {
  private nextSource = 0;

  constructor(readonly target: BackendTarget) {}

  /**
   * Starts a connection. Exactly one of the callbacks runs, unless the caller destroys
   * the returned socket first. allowHalfOpen: a backend's FIN must not close our
   * writing side towards it (half-close is relayed, not collapsed).
   */
  connect(
    onConnected: (socket: Socket) => void,
    onFailed: (failure: BackendFailure) => void,
  ): Socket {
    const socket = new Socket({ allowHalfOpen: true });
    let settled = false;
    const timer = setTimeout(() => {
      const error = Object.assign(
        new Error(`backend did not accept within ${this.target.connectTimeoutMs} ms`),
        { code: 'UNHITCH_BACKEND_CONNECT_TIMEOUT' },
      );
      fail(error);
    }, this.target.connectTimeoutMs);
    const fail = (error: NodeJS.ErrnoException): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      onFailed({ reason: backendFailureReason(error), error });
    };
    socket.once('error', fail);
    socket.once('connect', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeListener('error', fail);
      onConnected(socket);
    });
    socket.once('close', () => clearTimeout(timer));

    const address = this.target.address;
    if (address.kind === 'unix') {
      socket.connect({ path: address.path });
    } else {
      const localAddress = this.pickSource();
      socket.connect({
        host: address.host ?? '127.0.0.1',
        port: address.port,
        noDelay: true,
        ...(localAddress === undefined ? {} : { localAddress }),
      });
    }
    return socket;
  }

  private pickSource(): string | undefined {
    const sources = this.target.sourceAddresses;
    if (sources.length === 0) return undefined;
    const source = sources[this.nextSource % sources.length];
    this.nextSource = (this.nextSource + 1) % sources.length;
    return source;
  }
}
