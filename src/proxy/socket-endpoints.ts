/**
 * An accepted socket's addresses, read from the socket when first asked for. Each read is
 * a system call (getpeername(2) for the client's side, getsockname(2) for ours) that most
 * connections never need: only a PROXY header, write-ip, forwarded-for, a per-address
 * limit or a log line naming the client reads them (issue 24, bench/PERF-STEPS.md).
 *
 * The catch is the socket's lifetime: node closes a socket's handle before its 'error' and
 * 'close' listeners run, and a read after that finds nothing. So the client's side is read
 * at accept (`readSourceNow`) when a line logged at the end of the connection may name it;
 * ours is needed only while the connection is being set up (PROXY headers).
 */
import type { Socket } from 'node:net';
import type { ProxyEndpoints } from './proxy-protocol.js';

export class SocketEndpoints implements ProxyEndpoints {
  #sourceAddress: string | undefined = undefined;
  #sourcePort = 0;
  #destinationAddress: string | undefined = undefined;
  #destinationPort = 0;

  constructor(
    private readonly socket: Socket,
    readSourceNow: boolean,
  ) {
    if (readSourceNow) this.#readSource();
  }

  get sourceAddress(): string {
    return this.#readSource();
  }

  get sourcePort(): number {
    this.#readSource();
    return this.#sourcePort;
  }

  get destinationAddress(): string {
    return this.#readDestination();
  }

  get destinationPort(): number {
    this.#readDestination();
    return this.#destinationPort;
  }

  #readSource(): string {
    if (this.#sourceAddress === undefined) {
      // One getpeername(2); node keeps the result for remotePort.
      this.#sourceAddress = this.socket.remoteAddress ?? '';
      this.#sourcePort = this.socket.remotePort ?? 0;
    }
    return this.#sourceAddress;
  }

  #readDestination(): string {
    if (this.#destinationAddress === undefined) {
      this.#destinationAddress = this.socket.localAddress ?? '';
      this.#destinationPort = this.socket.localPort ?? 0;
    }
    return this.#destinationAddress;
  }
}
