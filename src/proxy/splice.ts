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

export interface SpliceFailure {
  readonly reason: ConnectionFailureReason;
  readonly error: Error | undefined;
}

export interface SpliceOptions {
  /** Rewrites client bytes until it returns `done` (X-Forwarded-For injection). */
  readonly clientTransform?: { push(chunk: Buffer): Buffer; readonly done: boolean };
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
  /** Hand this to BackendConnector.connect. */
  readonly onRead = (nread: number, buffer: Uint8Array): boolean => {
    const client = this.client;
    if (client === undefined || client.destroyed) return false;
    // Copied out (a slice of node's small-buffer pool below 4 KiB) because the read buffer
    // is reused by the next read while a queued write would still point into it.
    return client.write(Buffer.from(buffer.subarray(0, nread)));
  };

  attach(client: Socket): void {
    this.client = client;
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

  relay(client, backend, options.clientTransform);
  // The backend's bytes come through its read callback: a full client write buffer makes
  // that return false (node stops reading); 'drain' starts reading again.
  backendToClient.attach(client);
  client.on('drain', () => backend.resume());
  relayEnd(backend, client);

  client.on('error', (error) => fail('client_reset', error));
  backend.on('error', (error) => fail('backend_error', error));
  // on, not once, for events a socket emits at most once ('close', 'end'): once() wraps
  // each listener in a closure of its own, kept for the connection's life (bench/PERF-STEPS).
  client.on('close', () => {
    if (!finishedBothWays(client)) fail('client_reset', undefined);
    closed();
  });
  backend.on('close', () => {
    if (!finishedBothWays(backend)) fail('backend_error', undefined);
    closed();
  });
}

function finishedBothWays(socket: Socket): boolean {
  return socket.readableEnded && socket.writableFinished;
}

/** One direction: a minimal pipe() without its per-chunk bookkeeping. */
function relay(
  from: Socket,
  to: Socket,
  transform: { push(chunk: Buffer): Buffer; readonly done: boolean } | undefined,
): void {
  let pending = transform;
  from.on('data', (chunk: Buffer) => {
    let out = chunk;
    if (pending !== undefined) {
      out = pending.push(chunk);
      if (pending.done) pending = undefined;
      if (out.length === 0) return;
    }
    if (!to.write(out)) from.pause();
  });
  to.on('drain', () => from.resume());
  relayEnd(from, to);
}

function relayEnd(from: Socket, to: Socket): void {
  const end = (): void => {
    if (!to.destroyed) to.end();
  };
  // A client may send its FIN while the backend is still connecting: with nothing buffered
  // node emits 'end' before anyone listens, and the backend must still hear about it.
  if (from.readableEnded) end();
  else from.on('end', end);
}
