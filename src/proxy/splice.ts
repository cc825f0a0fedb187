/**
 * The relay between a decrypted client stream and its backend socket.
 *
 * Backpressure: a side whose peer's write buffer is full is paused until 'drain'.
 * Half-close: an end from one side becomes end() on the other, and the opposite
 * direction keeps flowing until it ends too. Any error, or a side that closes before
 * finishing both directions, tears down both: a half-dead pair never lingers.
 */
import type { Socket } from 'node:net';
import type { ConnectionFailureReason } from './events.js';
import type { ForwardedSink } from './forwarded.js';

export interface SpliceFailure {
  readonly reason: ConnectionFailureReason;
  readonly error: Error | undefined;
}

/**
 * Follows the client's byte stream and decides what the backend gets (forwarded-for),
 * watching the backend's replies; it acts through the sink the splice hands it.
 */
export interface ClientStreamFilter {
  clientData(chunk: Buffer): void;
  clientEnd(): void;
  backendData(bytes: Uint8Array): void;
  /** Client bytes are being held: a backend 'drain' must not restart reading. */
  readonly holding: boolean;
}

export interface SpliceOptions {
  /** Built with the splice's sink; sees every client byte and every backend byte. */
  readonly clientFilter?: (sink: ForwardedSink) => ClientStreamFilter;
  /** Called once, after both sockets have closed. */
  readonly onClosed: (failure: SpliceFailure | undefined) => void;
}

/**
 * Backend → client for a backend socket created with `onread` (see BackendConnector): the
 * read callback exists before the socket connects, the client is attached once the splice
 * starts. Backend bytes cannot arrive before that: reading starts after 'connect', whose
 * handler starts the splice synchronously.
 */
export class BackendToClient {
  private client: Socket | undefined;
  private observe: ((bytes: Uint8Array) => void) | undefined;
  /** Hand this to BackendConnector.connect. */
  readonly onRead = (nread: number, buffer: Uint8Array): boolean => {
    const client = this.client;
    if (client === undefined || client.destroyed) return false;
    if (this.observe !== undefined) {
      this.observe(buffer.subarray(0, nread));
      if (client.destroyed) return false;
    }
    // Copied out (a slice of node's small-buffer pool below 4 KiB) because the read buffer
    // is reused by the next read while a queued write would still point into it.
    return client.write(Buffer.from(buffer.subarray(0, nread)));
  };

  /** `observe` sees each read before it is written (it must copy what it keeps). */
  attach(client: Socket, observe?: (bytes: Uint8Array) => void): void {
    this.client = client;
    this.observe = observe;
  }
}

export function splice(
  client: Socket,
  backend: Socket,
  backendToClient: BackendToClient,
  options: SpliceOptions,
): void {
  let failure: SpliceFailure | undefined;
  let open = 2;
  const fail = (reason: ConnectionFailureReason, error: Error | undefined): void => {
    failure ??= { reason, error };
    client.destroy();
    backend.destroy();
  };
  const closed = (): void => {
    open -= 1;
    if (open === 0) options.onClosed(failure);
  };

  const filter = options.clientFilter?.({
    forward: (bytes) => {
      if (!backend.write(bytes)) client.pause();
    },
    endBackend: () => {
      if (!backend.destroyed) backend.end();
    },
    holdClient: (hold) => {
      if (hold) client.pause();
      else client.resume();
    },
    reject: (rejection) => {
      // The client gets the HTTP answer, then close_notify + FIN; the backend is done.
      failure ??= { reason: rejection.reason, error: rejection.error };
      backend.destroy();
      client.write(rejection.response);
      client.destroySoon();
    },
    lost: (error) => fail('backend_error', error),
  });
  if (filter === undefined) relay(client, backend);
  else relayThrough(client, backend, filter);
  // The backend's bytes come through its read callback: a full client write buffer makes
  // that return false (node stops reading); 'drain' starts reading again.
  backendToClient.attach(client, filter && ((bytes) => filter.backendData(bytes)));
  client.on('drain', () => backend.resume());
  relayEnd(backend, client);

  client.on('error', (error) => fail('client_reset', error));
  backend.on('error', (error) => fail('backend_error', error));
  // on, not once, for events a socket emits at most once ('close', 'end'): once() wraps
  // each listener in a closure of its own, kept for the connection's life (bench/PERF-STEPS).
  // Once a failure is set the pair is already being torn down (or, after a rejection,
  // the client is still being told why): a close then is its consequence, not news.
  client.on('close', () => {
    if (failure === undefined && !finishedBothWays(client)) fail('client_reset', undefined);
    closed();
  });
  backend.on('close', () => {
    if (failure === undefined && !finishedBothWays(backend)) fail('backend_error', undefined);
    closed();
  });
}

function finishedBothWays(socket: Socket): boolean {
  return socket.readableEnded && socket.writableFinished;
}

/** One direction: a minimal pipe() without its per-chunk bookkeeping. */
function relay(from: Socket, to: Socket): void {
  from.on('data', (chunk: Buffer) => {
    if (!to.write(chunk)) from.pause();
  });
  to.on('drain', () => from.resume());
  relayEnd(from, to);
}

/** Client → backend through a filter, which forwards (and ends) through its sink. */
function relayThrough(client: Socket, backend: Socket, filter: ClientStreamFilter): void {
  client.on('data', (chunk: Buffer) => filter.clientData(chunk));
  backend.on('drain', () => {
    if (!filter.holding) client.resume();
  });
  onEnd(client, () => filter.clientEnd());
}

function relayEnd(from: Socket, to: Socket): void {
  onEnd(from, () => {
    if (!to.destroyed) to.end();
  });
}

/**
 * A client may send its FIN while the backend is still connecting: with nothing buffered
 * node emits 'end' before anyone listens, and the backend must still hear about it.
 */
function onEnd(socket: Socket, then: () => void): void {
  if (socket.readableEnded) then();
  else socket.on('end', then); // on: see the 'close' listeners above
}
