/**
 * The relay between a decrypted client stream and its backend socket.
 *
 * Backpressure: a side whose peer's write buffer is full is paused until 'drain'.
 * Half-close: an end from one side becomes end() on the other, and the opposite
 * direction keeps flowing until it ends too. Any error, or a side that closes before
 * finishing both directions, tears down both: a half-dead pair never lingers.
 */
import type { Socket } from 'node:net';
import { UnhitchError } from '../errors.js';
import type { ConnectionFailureReason } from './events.js';
import type { ForwardedRejection, ForwardedSink } from './forwarded.js';
import { readIntoSharedBuffer } from './shared-read-buffer.js';

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
  /** The pair is closing: stop any timer of the filter's own (request-head-timeout). */
  close(): void;
}

/**
 * After a client's reset with nothing queued here, how long the backend may take to close
 * on our FIN before the end is called complete anyway (the connection stays counted).
 */
const RESET_JUDGING_MS = 1_000;

/** Where a socket's listeners find their splice: set on both sockets of the pair. */
const SPLICE = Symbol('unhitch.splice');

// Splice.flags: the pair's yes/no state in one field (each field is 8 bytes per connection).
/** The backend connected and the relay runs. */
const SPLICED = 1;
/** The client's last write hit its high-water mark and no 'drain' came since. */
const CLIENT_BACKED_UP = 2;
/** 'drain' listeners, added at the first write that hits the high-water mark: most
 * connections never need one, and each listener grows the socket's event table. */
const WATCHING_CLIENT_DRAIN = 4;
const WATCHING_BACKEND_DRAIN = 8;
/** The end is reported when both sockets have closed. */
const CLIENT_CLOSED = 16;
const BACKEND_CLOSED = 32;
/**
 * idle-timeout: a byte was read from either side since the last idle sweep. Set on every
 * read (one OR on a field the object has anyway: no timer, clock read or allocation per
 * chunk); the sweep clears it and counts the sweeps in a row that found it clear.
 */
const ACTIVE = 64;
const QUIET_SWEEPS_SHIFT = 7;
/** Three bits: up to 7 quiet sweeps in a row (IDLE_SWEEPS_PER_TIMEOUT needs 4). */
const QUIET_SWEEPS = 7 << QUIET_SWEEPS_SHIFT;
/**
 * Sweeps per idle-timeout: with a sweep every timeout / 4, a pair is closed after 4 quiet
 * sweeps in a row, i.e. after between 1 and 1.25 timeouts without a byte — never sooner.
 */
export const IDLE_SWEEPS_PER_TIMEOUT = 4;
type SplicedSocket = Socket & { [SPLICE]: Splice };

function spliceOf(socket: Socket): Splice {
  return (socket as SplicedSocket)[SPLICE];
}

/**
 * One client's sockets and everything the relay between them needs, in one object.
 *
 * Memory: an idle connection keeps this object and nothing else of ours. The sockets'
 * listeners are the module's shared functions below, which find the splice through the
 * socket (`this` of a listener is its emitter; `onread` calls back with the socket too);
 * per-connection closures and their contexts cost about 1.6 KiB per idle connection
 * (bench/PERF-STEPS.md, Node 24 memory). State of rare paths (a client's reset being
 * judged, a failure) is a field left undefined until then; 'drain' is listened to from the
 * first full write buffer on.
 *
 * Before `startSplice()` the backend is being dialled: the client's 'error' and 'close'
 * go to `clientLostEarly()`; the subclass owns that phase (connection.ts).
 */
export abstract class Splice implements ForwardedSink {
  /** Bytes handed to client.write: with client.bytesWritten, what never left this process. */
  private handedBytes = 0;
  private flags = 0;
  private filter: ClientStreamFilter | undefined = undefined;
  protected failure: SpliceFailure | undefined = undefined;
  protected clientLeftAbruptly: Error | undefined = undefined;
  /**
   * Set while a client that reset is being judged (see onClientError): backend bytes that
   * arrive then could no longer be delivered.
   */
  private judging: NodeJS.Timeout | undefined = undefined;

  constructor(
    readonly client: Socket,
    readonly backend: Socket,
  ) {
    (client as SplicedSocket)[SPLICE] = this;
    (backend as SplicedSocket)[SPLICE] = this;
    client.on('error', clientError);
    client.on('close', clientClose); // emitted once: on() spares once()'s wrapper
  }

  /** The client errored (`error`) or closed (undefined) before the splice started. */
  protected abstract clientLostEarly(error: Error | undefined): void;

  /** Called once, after both sockets have closed. */
  protected abstract spliceClosed(end: SpliceEnd): void;

  /**
   * The backend is connected: relay both ways. `makeFilter` (forwarded-for) sees every
   * client byte and every backend byte and decides what the backend gets.
   */
  protected startSplice(makeFilter?: (sink: ForwardedSink) => ClientStreamFilter): void {
    this.flags |= SPLICED;
    const { client, backend } = this;
    this.filter = makeFilter?.(this);
    // Client → backend: a full backend write buffer pauses the client until its 'drain'.
    // The backend's bytes come through its read callback: a full client write buffer makes
    // that return false (node stops reading); the client's 'drain' starts reading again.
    if (this.filter === undefined) {
      // Decrypted bytes straight from the TLS layer's reads (shared-read-buffer.ts); 'data'
      // still brings what node read before now, and everything on a node without it.
      client.on('data', clientData);
      readIntoSharedBuffer(client, clientRead);
    } else client.on('data', clientDataFiltered);
    onEnd(client, clientEnd);
    onEnd(backend, backendEnd);
    backend.on('error', backendError);
    backend.on('close', backendClose);
  }

  /** Backend → client (`backendRead`, the backend socket's `onread` callback). */
  onBackendRead(nread: number, buffer: Uint8Array): boolean {
    // Backend bytes cannot arrive before the splice: reading starts after 'connect', whose
    // handler starts the splice synchronously.
    if ((this.flags & SPLICED) === 0) return false;
    this.flags |= ACTIVE;
    const client = this.client;
    if (client.destroyed) {
      // Without a judging client reset, reading stops once the client is gone.
      if (this.judging === undefined) return false;
      this.judged(true);
      return true;
    }
    if (this.filter !== undefined) {
      this.filter.backendData(buffer.subarray(0, nread));
      if (client.destroyed) return false;
    }
    this.handedBytes += nread;
    // The read buffer is reused by the next read. A write that goes straight to the TLS
    // socket is encrypted before write() returns (node's TLSWrap copies any plaintext it
    // cannot encrypt yet), so it needs no copy; one that Writable queues behind an
    // unfinished write would be read later, and is copied out (a slice of node's pool).
    const bytes = buffer.subarray(0, nread);
    const queued = client.writableLength > 0 || client.writableCorked > 0;
    const accepted = client.write(queued ? Buffer.from(bytes) : bytes);
    if (!accepted) {
      this.flags |= CLIENT_BACKED_UP;
      if ((this.flags & WATCHING_CLIENT_DRAIN) === 0) {
        this.flags |= WATCHING_CLIENT_DRAIN;
        client.on('drain', clientDrain);
      }
    }
    return accepted;
  }

  onFilteredClientData(chunk: Buffer): void {
    this.flags |= ACTIVE;
    this.filter?.clientData(chunk);
  }

  /** The backend's write buffer is full: stop reading the client until it drains. */
  private pauseClient(): void {
    this.client.pause();
    if ((this.flags & WATCHING_BACKEND_DRAIN) === 0) {
      this.flags |= WATCHING_BACKEND_DRAIN;
      this.backend.on('drain', backendDrain);
    }
  }

  onClientData(chunk: Buffer): void {
    this.flags |= ACTIVE;
    if (!this.backend.write(chunk)) this.pauseClient();
  }

  /** Client → backend from the shared read buffer, which the next read overwrites. */
  onClientRead(nread: number, buffer: Uint8Array): boolean {
    this.onClientData(Buffer.from(buffer.subarray(0, nread)));
    // A full backend buffer has paused the client (pauseClient): reading stops there.
    return true;
  }

  onClientDrain(): void {
    this.flags &= ~CLIENT_BACKED_UP;
    this.backend.resume();
  }

  onBackendDrain(): void {
    if (!this.filter?.holding) this.client.resume();
  }

  onClientEnd(): void {
    if (this.filter !== undefined) this.filter.clientEnd();
    else if (!this.backend.destroyed) this.backend.end();
  }

  onBackendEnd(): void {
    if (this.filter?.backendEnd()) return;
    if (!this.client.destroyed) this.client.end();
  }

  onClientError(error: NodeJS.ErrnoException): void {
    if ((this.flags & SPLICED) === 0) {
      this.clientLostEarly(error);
      return;
    }
    if (this.failure !== undefined || this.clientLeftAbruptly !== undefined) return;
    const { client, backend } = this;
    const reset = error.code === 'ECONNRESET' || error.code === 'EPIPE';
    // Bytes still on their way would be lost: that is a real failure. The client socket is
    // already destroyed (its write buffer emptied), so its side is judged by what it was
    // handed and whether it was keeping up; bytes the kernel had already taken cannot be
    // seen from here.
    const inFlight =
      (this.flags & CLIENT_BACKED_UP) !== 0 ||
      this.handedBytes > client.bytesWritten ||
      backend.writableLength > 0 ||
      (this.filter?.pendingBytes ?? 0) > 0;
    if (!reset || inFlight) {
      this.fail('client_reset', error);
      return;
    }
    // Nothing queued here, but the backend may have been mid-answer with bytes already in
    // the kernel. Tell it the client is gone (FIN) and listen: a byte that still arrives
    // was lost, so the reset came mid-stream; the backend closing (or a quiet bound)
    // without one means the exchange was complete.
    this.clientLeftAbruptly = error;
    this.judging = setTimeout(judgedQuiet, RESET_JUDGING_MS, this);
    if (!backend.destroyed) backend.end();
  }

  /** The reset being judged lost backend bytes (`lost`), or the backend stayed quiet. */
  judged(lost: boolean): void {
    clearTimeout(this.judging);
    this.judging = undefined;
    const error = this.clientLeftAbruptly;
    if (lost && error !== undefined) {
      this.clientLeftAbruptly = undefined;
      this.failure ??= { reason: 'client_reset', error };
    }
    this.backend.destroy();
  }

  onBackendError(error: Error): void {
    // While a client's reset is judged the backend was sent a FIN on a dead pair; its
    // errors then (a reset of its own) are no news.
    if (this.clientLeftAbruptly === undefined) this.fail('backend_error', error);
    else this.backend.destroy();
  }

  onClientClose(): void {
    if ((this.flags & SPLICED) === 0) {
      this.clientLostEarly(undefined);
      return;
    }
    if (!this.endedOnPurpose() && !finishedBothWays(this.client))
      this.fail('client_reset', undefined);
    this.closed(CLIENT_CLOSED);
  }

  onBackendClose(): void {
    clearTimeout(this.judging);
    if (!this.endedOnPurpose() && !finishedBothWays(this.backend))
      this.fail('backend_error', undefined);
    this.closed(BACKEND_CLOSED);
  }

  /**
   * idle-timeout's sweep (TlsProxy, one timer per worker): true when this pair has now
   * been quiet for `IDLE_SWEEPS_PER_TIMEOUT` sweeps in a row and is being closed. A pair
   * still dialling its backend is left to backend-connect-timeout.
   */
  sweepIdle(idleTimeoutMs: number): boolean {
    const flags = this.flags;
    if ((flags & SPLICED) === 0 || this.endedOnPurpose()) return false;
    if ((flags & ACTIVE) !== 0) {
      this.flags = flags & ~(ACTIVE | QUIET_SWEEPS);
      return false;
    }
    const quiet = ((flags & QUIET_SWEEPS) >> QUIET_SWEEPS_SHIFT) + 1;
    if (quiet < IDLE_SWEEPS_PER_TIMEOUT) {
      this.flags = (flags & ~QUIET_SWEEPS) | (quiet << QUIET_SWEEPS_SHIFT);
      return false;
    }
    this.closeIdle(idleTimeoutMs);
    return true;
  }

  /**
   * Closed like a backend that closes: close_notify + FIN to the client, FIN to the
   * backend, each socket destroyed once its FIN is out. A side that still holds bytes for
   * its peer (a client that read nothing for a whole timeout) would never get its FIN
   * out: that stream is cut, so it is reset, as any failure that loses bytes is.
   */
  private closeIdle(idleTimeoutMs: number): void {
    this.failure = {
      reason: 'idle_timeout',
      error: new UnhitchError(
        'UNHITCH_IDLE_TIMEOUT',
        `no byte either way for ${idleTimeoutMs / 1000} s (idle-timeout)`,
      ),
    };
    const { client, backend } = this;
    if ((this.flags & CLIENT_BACKED_UP) !== 0 || client.writableLength > 0) abort(client);
    else client.destroySoon();
    if (backend.writableLength > 0) backend.destroy();
    else backend.destroySoon();
  }

  // ForwardedSink: the filter's decisions (forwarded-for).
  forward(bytes: Buffer): void {
    if (!this.backend.write(bytes)) this.pauseClient();
  }

  endBackend(): void {
    if (!this.backend.destroyed) this.backend.end();
  }

  holdClient(hold: boolean): void {
    if (hold) this.client.pause();
    else this.client.resume();
  }

  reject(rejection: ForwardedRejection): void {
    // The client gets the HTTP answer, then close_notify + FIN; the backend is done.
    this.failure ??= { reason: rejection.reason, error: rejection.error };
    this.backend.destroy();
    this.client.write(rejection.response);
    this.client.destroySoon();
  }

  lost(error: Error): void {
    this.fail('backend_error', error);
  }

  /**
   * A failure ends the pair. A client whose stream from the backend is cut short gets a
   * TCP reset: neither close_notify nor a FIN, which would tell it the stream ended whole.
   * Cut short: this process still holds backend bytes for it (its write buffer, or the
   * backend's reads paused for it), or the backend had begun to answer and broke off
   * without its FIN (a reset mid-stream: the backend's own unsent bytes are lost). A
   * client owed nothing (no answer begun, or the answer ended) gets a plain close.
   */
  private fail(reason: ConnectionFailureReason, error: Error | undefined): void {
    this.failure ??= { reason, error };
    const { client, backend } = this;
    const held = (this.flags & CLIENT_BACKED_UP) !== 0 || client.writableLength > 0;
    const cut = backend.bytesRead > 0 && !backend.readableEnded;
    if (held || cut) abort(client);
    else client.destroy();
    backend.destroy();
  }

  /**
   * Once a failure is set the pair is already being torn down (or, after a rejection, the
   * client is still being told why): a close then is its consequence, not news.
   */
  private endedOnPurpose(): boolean {
    return this.failure !== undefined || this.clientLeftAbruptly !== undefined;
  }

  private closed(side: typeof CLIENT_CLOSED | typeof BACKEND_CLOSED): void {
    this.flags |= side;
    this.filter?.close();
    if ((this.flags & (CLIENT_CLOSED | BACKEND_CLOSED)) === (CLIENT_CLOSED | BACKEND_CLOSED))
      this.spliceClosed({ failure: this.failure, clientLeftAbruptly: this.clientLeftAbruptly });
  }
}

// The sockets' listeners, shared by every connection (`this` is the emitting socket).
// on, not once, for events a socket emits at most once ('close', 'end'): once() wraps each
// listener in a closure of its own, kept for the connection's life.

/** Hand this to BackendConnector.socket(): the backend's bytes, straight from its reads. */
export function backendRead(this: Socket, nread: number, buffer: Uint8Array): boolean {
  return spliceOf(this).onBackendRead(nread, buffer);
}

/** Client → backend without a filter: a minimal pipe() without its per-chunk bookkeeping. */
function clientData(this: Socket, chunk: Buffer): void {
  spliceOf(this).onClientData(chunk);
}

function clientRead(this: Socket, nread: number, buffer: Uint8Array): boolean {
  return spliceOf(this).onClientRead(nread, buffer);
}

function clientDataFiltered(this: Socket, chunk: Buffer): void {
  spliceOf(this).onFilteredClientData(chunk);
}

function clientDrain(this: Socket): void {
  spliceOf(this).onClientDrain();
}

function backendDrain(this: Socket): void {
  spliceOf(this).onBackendDrain();
}

function clientEnd(this: Socket): void {
  spliceOf(this).onClientEnd();
}

function backendEnd(this: Socket): void {
  spliceOf(this).onBackendEnd();
}

function clientError(this: Socket, error: NodeJS.ErrnoException): void {
  spliceOf(this).onClientError(error);
}

function backendError(this: Socket, error: Error): void {
  spliceOf(this).onBackendError(error);
}

function clientClose(this: Socket): void {
  spliceOf(this).onClientClose();
}

function backendClose(this: Socket): void {
  spliceOf(this).onBackendClose();
}

function judgedQuiet(splice: Splice): void {
  splice.judged(false);
}

/**
 * Close with a TCP reset (SO_LINGER 0) through the TCP socket under a TLS one: what the
 * kernel held for the peer is dropped, and the peer reads ECONNRESET, not an end.
 */
function abort(socket: Socket): void {
  if (socket.destroyed) return;
  const tcp = (socket as Socket & { _parent?: Socket | null })._parent ?? socket;
  try {
    tcp.resetAndDestroy();
  } catch {
    // Not over TCP (a unix socket has no reset): closed as usual below.
  }
  socket.destroy();
}

function finishedBothWays(socket: Socket): boolean {
  return socket.readableEnded && socket.writableFinished;
}

/**
 * A client may send its FIN while the backend is still connecting: with nothing buffered
 * node emits 'end' before anyone listens, and the backend must still hear about it.
 */
function onEnd(socket: Socket, then: (this: Socket) => void): void {
  if (socket.readableEnded) then.call(socket);
  else socket.on('end', then);
}
