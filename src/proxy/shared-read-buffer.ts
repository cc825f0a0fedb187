/**
 * A TLS socket's decrypted bytes, read into one buffer shared by every connection of this
 * process and handed to a callback: net.Socket's documented `onread` option, for a socket
 * node does not offer it to.
 *
 * Why: without it, each decrypted record becomes a fresh ArrayBuffer (allocated and
 * copied in C++, with a backing store the GC must finalise) that goes through Readable's
 * push and is emitted as 'data'. That is per-message work a TLS terminator repeats for
 * every WebSocket frame (bench/PERF-STEPS.md, "shared read buffer").
 *
 * How: node supports `onread` on a TLSSocket only when it creates the TCP socket itself
 * (tls.connect without `socket`); a server's TLSSocket never gets it. The machinery is the
 * same for both: net.Socket keeps the buffer and the callback under three symbols, and the
 * stream handle (TLSWrap, a StreamBase) reads into a user buffer after useUserBuffer().
 * The symbols are node internals, found here by their description; when any part is
 * missing (a node that changed them) `readIntoSharedBuffer` returns false and the caller
 * keeps reading 'data'. test/unit/shared-read-buffer.test.ts checks the supported lines.
 *
 * The buffer is shared: the callback runs synchronously for each read and must copy what
 * it keeps. 16 KiB is the largest TLS record's plaintext; node's TLS layer hands a larger
 * read over in pieces of the buffer's size.
 */
import type { Socket } from 'node:net';

/** Called with the bytes read (`buffer[0, nread)`); false stops reading until resume(). */
export type SharedBufferReader = (this: Socket, nread: number, buffer: Uint8Array) => boolean;

const SHARED_BUFFER_BYTES = 16 * 1024;

interface ReadSymbols {
  readonly buffer: symbol;
  readonly callback: symbol;
  readonly generator: symbol;
}

type UserBufferHandle = { useUserBuffer?: (buffer: Uint8Array) => void };

let sharedBuffer: Buffer | undefined;
/** Found once, on the first socket: null when this node lacks them. */
let symbols: ReadSymbols | null | undefined;

function readSymbols(socket: Socket): ReadSymbols | null {
  if (symbols !== undefined) return symbols;
  const own = Object.getOwnPropertySymbols(socket);
  const named = (description: string): symbol | undefined =>
    own.find((candidate) => candidate.description === description);
  const buffer = named('kBuffer');
  const callback = named('kBufferCb');
  const generator = named('kBufferGen');
  symbols =
    buffer !== undefined && callback !== undefined && generator !== undefined
      ? { buffer, callback, generator }
      : null;
  return symbols;
}

/**
 * From now on the socket's decrypted bytes go to `reader` instead of 'data'. Bytes node
 * read before this call stay in the Readable buffer and still come as 'data': keep a
 * 'data' listener. False when this node cannot do it (nothing was changed then).
 */
export function readIntoSharedBuffer(socket: Socket, reader: SharedBufferReader): boolean {
  const found = readSymbols(socket);
  const handle = (socket as Socket & { _handle?: UserBufferHandle | null })._handle;
  if (found === null || typeof handle?.useUserBuffer !== 'function') return false;
  sharedBuffer ??= Buffer.allocUnsafe(SHARED_BUFFER_BYTES);
  const slots = socket as unknown as Record<symbol, unknown>;
  // A socket that already reads into a buffer of its own (or generates them) is left alone.
  if (slots[found.buffer] !== null || slots[found.generator] !== null) return false;
  slots[found.buffer] = sharedBuffer;
  slots[found.callback] = reader;
  handle.useUserBuffer(sharedBuffer);
  return true;
}
