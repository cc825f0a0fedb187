/**
 * Reads the server name (SNI) out of a TLS ClientHello before node:tls sees the bytes.
 *
 * Why peek at all: node:tls can neither send a TLS alert of our choosing from its
 * SNICallback (an error there only destroys the socket, so the client sees a bare close
 * where Hitch's sni-nomatch-abort sends `unrecognized_name`), nor change a connection's
 * client-certificate policy after SNI (requestCert is per tls.Server, nodejs/node#41211).
 * Knowing the name before the handshake lets the frontend answer with the alert itself or
 * hand the socket to the tls.Server whose policy belongs to that certificate.
 *
 * Only the record and handshake framing needed to reach the server_name extension is
 * parsed (RFC 8446 4.1.2, RFC 6066 3); a ClientHello may span several records, and is
 * accepted up to CLIENT_HELLO_MAX_BYTES.
 */

const CONTENT_TYPE_HANDSHAKE = 0x16;
const HANDSHAKE_CLIENT_HELLO = 0x01;
const EXTENSION_SERVER_NAME = 0x0000;
const EXTENSION_ALPN = 0x0010;
const SERVER_NAME_HOST = 0x00;
const RECORD_HEADER_BYTES = 5;
/** RFC 8446 5.1: a record carries at most 2^14 bytes of plaintext. */
const MAX_RECORD_PAYLOAD_BYTES = 16_384;

/**
 * The largest ClientHello a peeking frontend accepts (the handshake message, its 4-byte
 * header included); a larger one is refused (`too-large`) as soon as its header says so.
 * 16 KiB, the largest record's plaintext (RFC 8446 5.1): browsers
 * send about 1.8-2 KiB with a post-quantum key share (X25519MLKEM768's share is 1,216
 * bytes), and a client offering three hybrid shares, ECH and a session ticket stays
 * under 6 KiB, so the cap leaves a margin of 3-8x. OpenSSL alone would take a hello of
 * up to 131,396 bytes (CLIENT_HELLO_MAX_LENGTH) in records as small as 1 byte, which a
 * peek must not buffer: held in 1-byte records that is 786 KB of wire bytes per client.
 */
export const CLIENT_HELLO_MAX_BYTES = 16 * 1024;

/**
 * The most bytes the peek holds for one connection before its ClientHello is complete:
 * the largest hello plus the record headers of up to 204 records. A client that cuts a
 * hello into smaller records than that is refused (`too-large`) once past it.
 */
export const CLIENT_HELLO_MAX_HELD_BYTES = CLIENT_HELLO_MAX_BYTES + 1024;

export type ClientHelloPeek =
  /** More bytes are needed. */
  | { readonly kind: 'incomplete' }
  /**
   * A complete ClientHello; servername undefined when the client sent no SNI, alpn empty
   * when it offered no ALPN (read so that ACME's acme-tls/1 can be told apart).
   */
  | {
      readonly kind: 'client-hello';
      readonly servername: string | undefined;
      readonly alpn: readonly string[];
    }
  /** Not a TLS ClientHello (plain HTTP, SSLv2, garbage): OpenSSL decides. */
  | { readonly kind: 'not-client-hello' }
  /**
   * A ClientHello over CLIENT_HELLO_MAX_BYTES: `declaredBytes` when its header says so,
   * undefined when its records (tiny ones) ran past the cap first.
   */
  | { readonly kind: 'too-large'; readonly declaredBytes: number | undefined };

const INCOMPLETE: ClientHelloPeek = Object.freeze({ kind: 'incomplete' });
const NOT_CLIENT_HELLO: ClientHelloPeek = Object.freeze({ kind: 'not-client-hello' });
const EMPTY = Buffer.alloc(0);

/**
 * The fatal `unrecognized_name` alert (112) exactly as OpenSSL writes it when a
 * servername callback aborts: record type alert, version 0x0303, level fatal.
 */
export const UNRECOGNIZED_NAME_ALERT: Buffer = Buffer.from([
  0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70,
]);

/** The fatal `no_application_protocol` alert (120, RFC 7301 3.2), written the same way. */
export const NO_APPLICATION_PROTOCOL_ALERT: Buffer = Buffer.from([
  0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x78,
]);

/**
 * The fatal `illegal_parameter` alert (47): what OpenSSL sends for a handshake message
 * over its size limit (SSL_R_EXCESSIVE_MESSAGE_SIZE), sent here for one over ours.
 */
export const ILLEGAL_PARAMETER_ALERT: Buffer = Buffer.from([
  0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x2f,
]);

/** Look at what the client sent so far (everything from its first byte). */
export function peekClientHello(data: Buffer): ClientHelloPeek {
  return new ClientHelloReader().push(data);
}

/**
 * The same, fed as bytes arrive. Memory: one buffer holding the bytes received and
 * nothing per record (a hello in thousands of 1-byte records once cost a Buffer view per
 * record, about 100 bytes each); each byte is looked at once, however the client cuts its
 * records. `received()` gives the bytes back, for OpenSSL to read from the first.
 */
export class ClientHelloReader {
  /** The bytes received, `[0, #length)`; the socket's own chunk while only one came. */
  #buffer: Buffer = EMPTY;
  #length = 0;
  /** Whether #buffer is ours (a copy) or the first chunk itself. */
  #owned = false;
  /** How far into #buffer the records have been taken apart. */
  #offset = 0;
  /** Payload bytes still due from the record being read. */
  #recordLeft = 0;
  /** Handshake payload bytes so far (all records). */
  #payloadBytes = 0;
  /** The handshake header (type, 24-bit length), gathered across records. */
  readonly #head = Buffer.alloc(4);
  /** The ClientHello's length with its 4-byte header, once those 4 bytes are in. */
  #messageBytes: number | undefined;
  #result: ClientHelloPeek = INCOMPLETE;

  push(chunk: Buffer): ClientHelloPeek {
    if (this.#result.kind !== 'incomplete') return this.#result;
    this.#append(chunk);
    const result = this.#walk();
    if (result.kind !== 'incomplete') return this.#settle(result);
    if (this.#length > CLIENT_HELLO_MAX_HELD_BYTES)
      return this.#settle({ kind: 'too-large', declaredBytes: undefined });
    if (!this.#owned) this.#own(this.#length);
    return INCOMPLETE;
  }

  /** Every byte pushed so far (until the result was known), in order. */
  received(): Buffer {
    return this.#buffer.subarray(0, this.#length);
  }

  #append(chunk: Buffer): void {
    if (this.#length === 0) {
      // Most hellos arrive whole in one chunk: looked at where it lies, copied only if
      // more must be waited for (the socket's chunk is not ours to grow).
      this.#buffer = chunk;
      this.#length = chunk.length;
      this.#owned = false;
      return;
    }
    const needed = this.#length + chunk.length;
    if (needed > this.#buffer.length) this.#own(needed);
    chunk.copy(this.#buffer, this.#length);
    this.#length = needed;
  }

  /** Copy into a buffer of our own with room for `needed` bytes (doubling, to the cap). */
  #own(needed: number): void {
    const capacity = Math.max(
      needed,
      Math.min(CLIENT_HELLO_MAX_HELD_BYTES, Math.max(1024, 2 * this.#buffer.length)),
    );
    const grown = Buffer.allocUnsafe(capacity);
    this.#buffer.copy(grown, 0, 0, this.#length);
    this.#buffer = grown;
    this.#owned = true;
  }

  /** Takes apart the records received since the last call. */
  #walk(): ClientHelloPeek {
    const data = this.#buffer;
    while (this.#offset < this.#length) {
      const at = this.#offset;
      if (this.#recordLeft === 0) {
        // Judge the bytes already there first: plaintext or an SSLv2 hello is known at once.
        if (data[at] !== CONTENT_TYPE_HANDSHAKE) return NOT_CLIENT_HELLO;
        if (this.#length - at >= 2 && data[at + 1] !== 0x03) return NOT_CLIENT_HELLO;
        if (this.#length - at < RECORD_HEADER_BYTES) return INCOMPLETE;
        const recordLength = data.readUInt16BE(at + 3);
        if (recordLength === 0 || recordLength > MAX_RECORD_PAYLOAD_BYTES) return NOT_CLIENT_HELLO;
        this.#recordLeft = recordLength;
        this.#offset = at + RECORD_HEADER_BYTES;
        continue;
      }
      const taken = Math.min(this.#recordLeft, this.#length - at);
      for (let index = 0; this.#payloadBytes + index < 4 && index < taken; index++)
        this.#head[this.#payloadBytes + index] = data[at + index] as number;
      this.#recordLeft -= taken;
      this.#offset = at + taken;
      this.#payloadBytes += taken;
      if (this.#head[0] !== HANDSHAKE_CLIENT_HELLO) return NOT_CLIENT_HELLO;
      if (this.#messageBytes === undefined && this.#payloadBytes >= 4) {
        this.#messageBytes = 4 + this.#head.readUIntBE(1, 3);
        // Refused from its header on: nothing of an oversized hello is kept waiting for.
        if (this.#messageBytes > CLIENT_HELLO_MAX_BYTES)
          return { kind: 'too-large', declaredBytes: this.#messageBytes };
      }
      if (this.#messageBytes !== undefined && this.#payloadBytes >= this.#messageBytes)
        return parseClientHelloBody(this.#message(this.#messageBytes).subarray(4));
    }
    return INCOMPLETE;
  }

  /** The handshake message's `bytes`, its records' payloads joined (a view for one record). */
  #message(bytes: number): Buffer {
    const data = this.#buffer;
    const firstRecord = data.readUInt16BE(3);
    if (firstRecord >= bytes)
      return data.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + bytes);
    const message = Buffer.allocUnsafe(bytes);
    let written = 0;
    for (let at = 0; written < bytes; ) {
      const recordLength = data.readUInt16BE(at + 3);
      const start = at + RECORD_HEADER_BYTES;
      const part = Math.min(recordLength, bytes - written);
      data.copy(message, written, start, start + part);
      written += part;
      at = start + recordLength;
    }
    return message;
  }

  #settle(result: ClientHelloPeek): ClientHelloPeek {
    this.#result = result;
    return result;
  }
}

/** A bounds-checked reader: every read past the end throws, turned into NOT_CLIENT_HELLO. */
class Reader {
  private offset = 0;
  constructor(private readonly bytes: Buffer) {}

  skip(count: number): void {
    this.take(count);
  }

  u8(): number {
    return this.take(1).readUInt8(0);
  }

  u16(): number {
    return this.take(2).readUInt16BE(0);
  }

  take(count: number): Buffer {
    if (count < 0 || this.offset + count > this.bytes.length) throw new RangeError('truncated');
    const slice = this.bytes.subarray(this.offset, this.offset + count);
    this.offset += count;
    return slice;
  }

  get remaining(): number {
    return this.bytes.length - this.offset;
  }
}

function parseClientHelloBody(body: Buffer): ClientHelloPeek {
  try {
    const reader = new Reader(body);
    reader.skip(2 + 32); // legacy_version, random
    reader.skip(reader.u8()); // legacy_session_id
    reader.skip(reader.u16()); // cipher_suites
    reader.skip(reader.u8()); // legacy_compression_methods
    if (reader.remaining === 0) return { kind: 'client-hello', servername: undefined, alpn: [] };
    const extensions = new Reader(reader.take(reader.u16()));
    let servername: string | undefined;
    let alpn: readonly string[] = [];
    while (extensions.remaining > 0) {
      const type = extensions.u16();
      const value = extensions.take(extensions.u16());
      if (type === EXTENSION_SERVER_NAME) servername = hostName(value);
      else if (type === EXTENSION_ALPN) alpn = protocolNames(value);
    }
    return { kind: 'client-hello', servername, alpn };
  } catch {
    return NOT_CLIENT_HELLO;
  }
}

/** The ProtocolNameList of an ALPN extension (RFC 7301 3.1). */
function protocolNames(extension: Buffer): string[] {
  const outer = new Reader(extension);
  const list = new Reader(outer.take(outer.u16()));
  const names: string[] = [];
  while (list.remaining > 0) names.push(list.take(list.u8()).toString('latin1'));
  return names;
}

/** The host_name entry of a server_name extension (RFC 6066 3: at most one per type). */
function hostName(extension: Buffer): string | undefined {
  const outer = new Reader(extension);
  const list = new Reader(outer.take(outer.u16()));
  while (list.remaining > 0) {
    const nameType = list.u8();
    const name = list.take(list.u16());
    if (nameType === SERVER_NAME_HOST) return name.toString('latin1');
  }
  return undefined;
}
