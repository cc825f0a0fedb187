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
 * parsed (RFC 8446 4.1.2, RFC 6066 3); a ClientHello may span several records.
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
 * Peeking gives up (and lets OpenSSL judge the bytes) past this many buffered bytes. Above
 * OpenSSL's own bound (CLIENT_HELLO_MAX_LENGTH, 131396 bytes of message, plus record
 * headers): a hello OpenSSL accepts is always read here, so routing never misses one.
 */
export const CLIENT_HELLO_PEEK_LIMIT_BYTES = 132 * 1024;

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
  /** Not a TLS ClientHello (plain HTTP, SSLv2, garbage, too large): OpenSSL decides. */
  | { readonly kind: 'not-client-hello' };

const INCOMPLETE: ClientHelloPeek = Object.freeze({ kind: 'incomplete' });
const NOT_CLIENT_HELLO: ClientHelloPeek = Object.freeze({ kind: 'not-client-hello' });

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

/** Look at what the client sent so far (everything from its first byte). */
export function peekClientHello(data: Buffer): ClientHelloPeek {
  return new ClientHelloReader().push(data);
}

/**
 * The same, fed as bytes arrive: each byte is looked at once, however the client cuts its
 * records (a hello in thousands of 1-byte records must not cost thousands of re-parses).
 */
export class ClientHelloReader {
  /** Bytes of the record stream not yet taken apart (a partial record header). */
  #pending: Buffer = Buffer.alloc(0);
  /** Payload bytes still due from the record being read. */
  #recordLeft = 0;
  /** Payloads of the handshake records so far, in order. */
  readonly #payloads: Buffer[] = [];
  #payloadBytes = 0;
  /** The ClientHello's length with its 4-byte header, once those 4 bytes are in. */
  #messageBytes: number | undefined;
  #received = 0;
  #result: ClientHelloPeek = INCOMPLETE;

  push(chunk: Buffer): ClientHelloPeek {
    if (this.#result.kind !== 'incomplete') return this.#result;
    this.#received += chunk.length;
    if (this.#received > CLIENT_HELLO_PEEK_LIMIT_BYTES) return this.#settle(NOT_CLIENT_HELLO);
    let data = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    this.#pending = Buffer.alloc(0);
    while (data.length > 0) {
      if (this.#recordLeft === 0) {
        // Judge the bytes already there first: plaintext or an SSLv2 hello is known at once.
        if (data[0] !== CONTENT_TYPE_HANDSHAKE) return this.#settle(NOT_CLIENT_HELLO);
        if (data.length >= 2 && data[1] !== 0x03) return this.#settle(NOT_CLIENT_HELLO);
        if (data.length < RECORD_HEADER_BYTES) {
          this.#pending = Buffer.from(data); // a copy: the socket's chunk is not ours to keep
          return INCOMPLETE;
        }
        const recordLength = data.readUInt16BE(3);
        if (recordLength === 0 || recordLength > MAX_RECORD_PAYLOAD_BYTES)
          return this.#settle(NOT_CLIENT_HELLO);
        this.#recordLeft = recordLength;
        data = data.subarray(RECORD_HEADER_BYTES);
        continue;
      }
      const taken = data.subarray(0, Math.min(this.#recordLeft, data.length));
      this.#recordLeft -= taken.length;
      data = data.subarray(taken.length);
      const result = this.#payload(taken);
      if (result.kind !== 'incomplete') return this.#settle(result);
    }
    return INCOMPLETE;
  }

  #payload(bytes: Buffer): ClientHelloPeek {
    this.#payloads.push(bytes);
    this.#payloadBytes += bytes.length;
    const first = this.#payloads[0] as Buffer;
    if (first[0] !== HANDSHAKE_CLIENT_HELLO) return NOT_CLIENT_HELLO;
    if (this.#messageBytes === undefined) {
      if (this.#payloadBytes < 4) return INCOMPLETE;
      const header = first.length >= 4 ? first : Buffer.concat(this.#payloads, 4);
      this.#messageBytes = 4 + header.readUIntBE(1, 3);
    }
    if (this.#payloadBytes < this.#messageBytes) return INCOMPLETE;
    const joined =
      this.#payloads.length === 1 ? first : Buffer.concat(this.#payloads, this.#payloadBytes);
    return parseClientHelloBody(joined.subarray(4, this.#messageBytes));
  }

  #settle(result: ClientHelloPeek): ClientHelloPeek {
    this.#result = result;
    this.#payloads.length = 0;
    this.#pending = Buffer.alloc(0);
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
