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
 * How a pair ended. `failure` when it ended badly; `clientLeftAbruptly` when the client
 * reset (ECONNRESET/EPIPE) with nothing in flight: every byte it sent had reached the
 * backend's socket and every byte for it had reached its own. That is how WebSocket
 * clients and load generators hang up after a complete exchange; not a failure.
 */
export interface SpliceEnd {
  readonly failure: SpliceFailure | undefined;
  readonly clientLeftAbruptly: Error | undefined;
}

/**
 * Follows the client's byte stream and decides what the backend gets (forwarded-for),
 * watching the backend's replies; it acts through the sink the splice hands it.
 */
export interface ClientStreamFilter {
  clientData(chunk: Buffer): void;
  clientEnd(): void;
  backendData(bytes: Uint8Array): void;
  /** The backend's FIN; true when the filter closes the client itself (a pending refusal). */
  backendEnd(): boolean;
  /** Client bytes are being held: a backend 'drain' must not restart reading. */
  readonly holding: boolean;
  /** Client bytes read but not yet forwarded (a partial head, bytes held). */
  readonly pendingBytes: number;
}

export interface SpliceOptions {
  /** Built with the splice's sink; sees every client byte and every backend byte. */
  readonly clientFilter?: (sink: ForwardedSink) => ClientStreamFilter;
  /** Called once, after both sockets have closed. */
  readonly onClosed: (end: SpliceEnd) => void;
}

/**
 * Backend → client for a backend socket created with `onread` (see BackendConnector): the
 * read callback exists before the socket connects, the client is attached once the splice
 * starts. Backend bytes cannot arrive before that: reading starts after 'connect', whose
 * handler starts the splice synchronously.
 */
export class BackendToClient {
  private client: Socket | undefined;
  /** Bytes handed to client.write: with client.bytesWritten, what never left this process. */
  handedBytes = 0;
  /** The client's last write hit its high-water mark and no 'drain' came since. */
  backedUp = false;
  private observe: ((bytes: Uint8Array) => void) | undefined;
  /**
   * Set while a client that reset is being judged (see splice): backend bytes that arrive
   * then could no longer be delivered. Without it reading stops once the client is gone.
   */
  onUndeliverable: ((bytes: number) => void) | undefined;
  /** Hand this to BackendConnector.connect. */
  readonly onRead = (nread: number, buffer: Uint8Array): boolean => {
    const client = this.client;
    if (client === undefined) return false;
    if (client.destroyed) {
      if (this.onUndeliverable === undefined) return false;
      this.onUndeliverable(nread);
      return true;
    }
    if (this.observe !== undefined) {
      this.observe(buffer.subarray(0, nread));
      if (client.destroyed) return false;
    }
    this.handedBytes += nread;
    // Copied out (a slice of node's small-buffer pool below 4 KiB) because the read buffer
    // is reused by the next read while a queued write would still point into it.
    const accepted = client.write(Buffer.from(buffer.subarray(0, nread)));
    if (!accepted) this.backedUp = true;
    return accepted;
  };

  /** `observe` sees each read before it is written (it must copy what it keeps). */
  attach(client: Socket, observe?: (bytes: Uint8Array) => void): void {
    this.client = client;
    this.observe = observe;
  }
}

/**
 * After a client's reset with nothing queued here, how long the backend may take to close
 * on our FIN before the end is called complete anyway (the connection stays counted).
 */
const RESET_JUDGING_MS = 1_000;

export function splice(
  client: Socket,
  backend: Socket,
  backendToClient: BackendToClient,
  options: SpliceOptions,
): void {
  let failure: SpliceFailure | undefined;
  let clientLeftAbruptly: Error | undefined;
  let open = 2;
  const fail = (reason: ConnectionFailureReason, error: Error | undefined): void => {
    failure ??= { reason, error };
    client.destroy();
    backend.destroy();
  };
  const closed = (): void => {
    open -= 1;
    if (open === 0) options.onClosed({ failure, clientLeftAbruptly });
  };
  const clientError = (error: NodeJS.ErrnoException): void => {
    if (failure !== undefined || clientLeftAbruptly !== undefined) return;
    const reset = error.code === 'ECONNRESET' || error.code === 'EPIPE';
    // Bytes still on their way would be lost: that is a real failure. The client socket is
    // already destroyed (its write buffer emptied), so its side is judged by what it was
    // handed and whether it was keeping up; bytes the kernel had already taken cannot be
    // seen from here.
    const inFlight =
      backendToClient.backedUp ||
      backendToClient.handedBytes > client.bytesWritten ||
      backend.writableLength > 0 ||
      (filter?.pendingBytes ?? 0) > 0;
    if (!reset || inFlight) {
      fail('client_reset', error);
      return;
    }
    // Nothing queued here, but the backend may have been mid-answer with bytes already in
    // the kernel. Tell it the client is gone (FIN) and listen: a byte that still arrives
    // was lost, so the reset came mid-stream; the backend closing (or a quiet bound)
    // without one means the exchange was complete.
    clientLeftAbruptly = error;
    const judged = (lost: boolean): void => {
      clearTimeout(bound);
      backendToClient.onUndeliverable = undefined;
      if (lost) {
        clientLeftAbruptly = undefined;
        failure ??= { reason: 'client_reset', error };
      }
      backend.destroy();
    };
    const bound = setTimeout(() => judged(false), RESET_JUDGING_MS);
    backendToClient.onUndeliverable = () => judged(true);
    backend.once('close', () => clearTimeout(bound));
    if (!backend.destroyed) backend.end();
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
  client.on('drain', () => {
    backendToClient.backedUp = false;
    backend.resume();
  });
  onEnd(backend, () => {
    if (filter?.backendEnd()) return;
    if (!client.destroyed) client.end();
  });

  client.on('error', clientError);
  backend.on('error', (error) => {
    // While a client's reset is judged the backend was sent a FIN on a dead pair; its
    // errors then (a reset of its own) are no news.
    if (clientLeftAbruptly === undefined) fail('backend_error', error);
    else backend.destroy();
  });
  // on, not once, for events a socket emits at most once ('close', 'end'): once() wraps
  // each listener in a closure of its own, kept for the connection's life (bench/PERF-STEPS).
  // Once a failure is set the pair is already being torn down (or, after a rejection,
  // the client is still being told why): a close then is its consequence, not news.
  const endedOnPurpose = (): boolean => failure !== undefined || clientLeftAbruptly !== undefined;
  client.on('close', () => {
    if (!endedOnPurpose() && !finishedBothWays(client)) fail('client_reset', undefined);
    closed();
  });
  backend.on('close', () => {
    if (!endedOnPurpose() && !finishedBothWays(backend)) fail('backend_error', undefined);
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
