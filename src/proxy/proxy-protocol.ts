/**
 * PROXY protocol v1/v2 (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt).
 *
 * Encoding follows Hitch's write_proxy_v1 / write_proxy_v2: the v2 header is
 * signature, ver_cmd 0x21 (v2|PROXY), fam 0x11 (INET|STREAM) or 0x21 (INET6|STREAM),
 * big-endian length, address block (src addr, dst addr, src port, dst port), then TLVs
 * in Hitch's order: PP2_TYPE_ALPN, PP2_TYPE_AUTHORITY, the client certificate (PEM,
 * proxy-client-cert) in the custom TLV 0xE0, then PP2_TYPE_SSL (client flags, verify,
 * sub-TLVs PP2_SUBTYPE_SSL_VERSION then PP2_SUBTYPE_SSL_CIPHER).
 *
 * Parsing is our own rather than proxy-protocol-js: that library parses only complete
 * buffers and treats everything after the address block (TLVs and payload alike) as
 * "data", whereas 'proxy-proxy' needs an incremental reader with a byte bound that
 * separates the header from the TLS bytes that follow it.
 */

import { UnhitchError } from '../errors.js';
import {
  asIPv6,
  familyOf,
  type IpAddress,
  type IpFamily,
  ipBytes,
  ipFromBytes,
  ipText,
  parseIp,
  peerAddress,
} from '../net/ip.js';

export interface ProxyEndpoints {
  readonly sourceAddress: string;
  readonly sourcePort: number;
  readonly destinationAddress: string;
  readonly destinationPort: number;
}

export interface ProxyTlvs {
  /** Negotiated ALPN protocol (PP2_TYPE_ALPN). */
  readonly alpn?: string;
  /** SNI server name sent by the client (PP2_TYPE_AUTHORITY). */
  readonly authority?: string;
  /** TLS details (PP2_TYPE_SSL with PP2_SUBTYPE_SSL_VERSION / PP2_SUBTYPE_SSL_CIPHER). */
  readonly tls?: {
    readonly version: string;
    readonly cipher: string;
    /** What the client's certificate, if any, did in this handshake. */
    readonly clientCertificate?: ClientCertificateStatus;
  };
  /** The client certificate in PEM (Hitch 1.7 proxy-client-cert, TLV type 0xE0). */
  readonly clientCertificatePem?: string;
}

export interface ClientCertificateStatus {
  /** Sent in this handshake (PP2_CLIENT_CERT_CONN). */
  readonly onConnection: boolean;
  /** Part of the session, also when resumed without sending it again (PP2_CLIENT_CERT_SESS). */
  readonly inSession: boolean;
  /** Present and verified against client-verify-ca: the only case `verify` is 0. */
  readonly verified: boolean;
}

export type ProxyHeaderErrorCode = 'UNHITCH_PROXY_HEADER_INVALID' | 'UNHITCH_PROXY_HEADER_REUSED';

export class ProxyHeaderError extends UnhitchError<ProxyHeaderErrorCode> {
  constructor(message: string, code: ProxyHeaderErrorCode = 'UNHITCH_PROXY_HEADER_INVALID') {
    super(code, message);
    this.name = 'ProxyHeaderError';
  }
}

export const PROXY_V2_SIGNATURE: Buffer = Buffer.from([
  0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
]);

const PP2_VERSION = 0x20;
const PP2_CMD_LOCAL = 0x00;
const PP2_CMD_PROXY = 0x01;
const PP2_FAM_UNSPEC = 0x00;
const PP2_FAM_INET = 0x10;
const PP2_FAM_INET6 = 0x20;
const PP2_FAM_UNIX = 0x30;
const PP2_TRANS_STREAM = 0x01;
const PP2_TYPE_ALPN = 0x01;
const PP2_TYPE_AUTHORITY = 0x02;
const PP2_TYPE_SSL = 0x20;
const PP2_SUBTYPE_SSL_VERSION = 0x21;
const PP2_SUBTYPE_SSL_CIPHER = 0x23;
const PP2_CLIENT_SSL = 0x01;
const PP2_CLIENT_CERT_CONN = 0x02;
const PP2_CLIENT_CERT_SESS = 0x04;
/** Hitch's custom TLV (PP2_TYPE_MIN_CUSTOM, since 1.7) for the client certificate in PEM. */
const PP2_TYPE_CLIENT_CERT = 0xe0;
/** `verify` is "zero if the client presented a certificate and it was successfully
 * verified, and non-zero otherwise" (proxy-protocol.txt 2.2.5); Hitch writes 1. */
const PP2_VERIFY_OK = 0;
const PP2_VERIFY_NOT_VERIFIED = 1;
const PP2_FIXED_HEADER_BYTES = 16;
const PP2_IPV4_BLOCK_BYTES = 12;
const PP2_IPV6_BLOCK_BYTES = 36;
const TLV_MAX_VALUE_BYTES = 0xffff;

/** The longest legal v1 line ("PROXY TCP6 <39> <39> 65535 65535\r\n") is 107 bytes. */
const PROXY_V1_MAX_LINE_BYTES = 107;
const PROXY_V1_PREFIX = Buffer.from('PROXY ', 'latin1');
/** Hitch's PP2_HEADER_MAX: 16-byte fixed part + the largest (AF_UNIX) address block + TLV room. */
export const DEFAULT_PROXY_HEADER_MAX_BYTES = 536;

// ---------------------------------------------------------------------------
// Addresses

interface NormalizedEndpoints {
  readonly family: IpFamily;
  readonly source: IpAddress;
  readonly destination: IpAddress;
}

/**
 * Decide the family of the pair: both IPv4 (after unmapping) → 4; both IP with at least
 * one IPv6 → 6 with the IPv4 side written as '::ffff:a.b.c.d'; anything else → undefined.
 */
function normalizeEndpoints(endpoints: ProxyEndpoints): NormalizedEndpoints | undefined {
  if (!isPort(endpoints.sourcePort) || !isPort(endpoints.destinationPort)) return undefined;
  const source = peerAddress(endpoints.sourceAddress);
  const destination = peerAddress(endpoints.destinationAddress);
  if (source === undefined || destination === undefined) return undefined;
  if (familyOf(source) === 4 && familyOf(destination) === 4) {
    return { family: 4, source, destination };
  }
  return { family: 6, source: asIPv6(source), destination: asIPv6(destination) };
}

function isPort(port: number): boolean {
  return Number.isInteger(port) && port >= 0 && port <= 0xffff;
}

// ---------------------------------------------------------------------------
// Encoding

export function encodeProxyV1(endpoints: ProxyEndpoints): Buffer {
  const normalized = normalizeEndpoints(endpoints);
  if (normalized === undefined) return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
  const proto = normalized.family === 4 ? 'TCP4' : 'TCP6';
  const source = ipText(normalized.source);
  const destination = ipText(normalized.destination);
  const line = `PROXY ${proto} ${source} ${destination} ${endpoints.sourcePort} ${endpoints.destinationPort}\r\n`;
  return Buffer.from(line, 'latin1');
}

function encodeTlv(type: number, value: Buffer): Buffer {
  if (value.length > TLV_MAX_VALUE_BYTES) {
    throw new ProxyHeaderError(`TLV 0x${type.toString(16)} value too long (${value.length} bytes)`);
  }
  const head = Buffer.alloc(3);
  head.writeUInt8(type, 0);
  head.writeUInt16BE(value.length, 1);
  return Buffer.concat([head, value]);
}

/**
 * PP2_TYPE_SSL value: client flags (PP2_CLIENT_SSL, plus CERT_CONN / CERT_SESS when a
 * client certificate came with this handshake / is in its session), verify as uint32
 * (0 only for a presented and verified certificate, else 1, as Hitch writes: Hitch's
 * test39 expects client 0x7 verify 0x0 with a certificate, client 0x1 and a non-zero
 * verify without one), then sub-TLVs.
 */
function encodeSslTlv(tls: NonNullable<ProxyTlvs['tls']>): Buffer {
  const certificate = tls.clientCertificate;
  let client = PP2_CLIENT_SSL;
  if (certificate?.onConnection) client |= PP2_CLIENT_CERT_CONN;
  if (certificate?.inSession) client |= PP2_CLIENT_CERT_SESS;
  const fixed = Buffer.alloc(5);
  fixed.writeUInt8(client, 0);
  fixed.writeUInt32BE(certificate?.verified ? PP2_VERIFY_OK : PP2_VERIFY_NOT_VERIFIED, 1);
  return encodeTlv(
    PP2_TYPE_SSL,
    Buffer.concat([
      fixed,
      encodeTlv(PP2_SUBTYPE_SSL_VERSION, Buffer.from(tls.version, 'latin1')),
      encodeTlv(PP2_SUBTYPE_SSL_CIPHER, Buffer.from(tls.cipher, 'latin1')),
    ]),
  );
}

/**
 * TLV 0xE0 as Hitch writes it: PEM_write_bio_X509_AUX, i.e. the PEM label "TRUSTED
 * CERTIFICATE" around i2d_X509_AUX. A certificate read off the wire has no aux (trust)
 * data, and i2d_X509_AUX writes the aux block only when present, so the body is the
 * certificate's DER, base64 in 64-column lines exactly as the plain PEM has it.
 */
function trustedCertificatePem(pem: string): string {
  return pem
    .replace('-----BEGIN CERTIFICATE-----', '-----BEGIN TRUSTED CERTIFICATE-----')
    .replace('-----END CERTIFICATE-----', '-----END TRUSTED CERTIFICATE-----');
}

export function encodeProxyV2Tlvs(tlvs: ProxyTlvs | undefined): Buffer {
  if (tlvs === undefined) return Buffer.alloc(0);
  const parts: Buffer[] = [];
  if (tlvs.alpn) parts.push(encodeTlv(PP2_TYPE_ALPN, Buffer.from(tlvs.alpn, 'latin1')));
  if (tlvs.authority) {
    parts.push(encodeTlv(PP2_TYPE_AUTHORITY, Buffer.from(tlvs.authority, 'utf8')));
  }
  // Hitch's order (hitch.c, and its bytes in hitch-differential.test.ts): the client
  // certificate before the SSL TLV.
  if (tlvs.clientCertificatePem) {
    const pem = trustedCertificatePem(tlvs.clientCertificatePem);
    parts.push(encodeTlv(PP2_TYPE_CLIENT_CERT, Buffer.from(pem, 'latin1')));
  }
  if (tlvs.tls) parts.push(encodeSslTlv(tlvs.tls));
  return Buffer.concat(parts);
}

function encodeAddressBlock(normalized: NormalizedEndpoints, endpoints: ProxyEndpoints): Buffer {
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(endpoints.sourcePort, 0);
  ports.writeUInt16BE(endpoints.destinationPort, 2);
  return Buffer.concat([ipBytes(normalized.source), ipBytes(normalized.destination), ports]);
}

/**
 * v2 header. Non-IP endpoints (which Hitch never has to handle) become PROXY with
 * AF_UNSPEC and an empty address block, which the spec tells receivers to accept
 * using the real connection addresses.
 */
export function encodeProxyV2(endpoints: ProxyEndpoints, tlvs?: ProxyTlvs): Buffer {
  const normalized = normalizeEndpoints(endpoints);
  const addressBlock =
    normalized === undefined ? Buffer.alloc(0) : encodeAddressBlock(normalized, endpoints);
  const family =
    normalized === undefined
      ? PP2_FAM_UNSPEC
      : (normalized.family === 4 ? PP2_FAM_INET : PP2_FAM_INET6) | PP2_TRANS_STREAM;
  const tlvBytes = encodeProxyV2Tlvs(tlvs);
  const payloadLength = addressBlock.length + tlvBytes.length;
  if (payloadLength > 0xffff) throw new ProxyHeaderError('PROXY v2 header too long');
  const fixed = Buffer.alloc(4);
  fixed.writeUInt8(PP2_VERSION | PP2_CMD_PROXY, 0);
  fixed.writeUInt8(family, 1);
  fixed.writeUInt16BE(payloadLength, 2);
  return Buffer.concat([PROXY_V2_SIGNATURE, fixed, addressBlock, tlvBytes]);
}

// ---------------------------------------------------------------------------
// Parsing ('proxy-proxy': a load balancer in front of us sends the header before TLS)

export interface ProxyHeaderResult {
  /** undefined for LOCAL, UNKNOWN, AF_UNSPEC and AF_UNIX headers. */
  readonly endpoints: ProxyEndpoints | undefined;
  /** The bytes after the header (start of the TLS stream). */
  readonly rest: Buffer;
  /** The header exactly as received (Hitch forwards the v1 line to the backend). */
  readonly header: Buffer;
}

function parsePortText(text: string): number {
  // The spec forbids leading zeros; a strict reader refuses them.
  if (!/^(0|[1-9][0-9]{0,4})$/.test(text)) throw new ProxyHeaderError(`bad port: ${text}`);
  const port = Number(text);
  if (port > 0xffff) throw new ProxyHeaderError(`bad port: ${text}`);
  return port;
}

function parseV1Line(line: string): ProxyEndpoints | undefined {
  const fields = line.split(' ');
  if (fields[0] !== 'PROXY') throw new ProxyHeaderError('PROXY v1 line must start with "PROXY "');
  if (fields[1] === 'UNKNOWN') return undefined;
  if (fields.length !== 6) throw new ProxyHeaderError('PROXY v1 line must have 6 fields');
  const [, proto, source = '', destination = '', sourcePort = '', destinationPort = ''] = fields;
  const family = proto === 'TCP4' ? 4 : proto === 'TCP6' ? 6 : undefined;
  if (family === undefined) throw new ProxyHeaderError(`bad PROXY v1 protocol: ${proto}`);
  const isFamily = (text: string): boolean => {
    const parsed = text.includes('%') ? undefined : parseIp(text);
    return parsed !== undefined && familyOf(parsed) === family;
  };
  if (!isFamily(source) || !isFamily(destination)) {
    throw new ProxyHeaderError(`bad ${proto} address in PROXY v1 line`);
  }
  return {
    sourceAddress: source,
    destinationAddress: destination,
    sourcePort: parsePortText(sourcePort),
    destinationPort: parsePortText(destinationPort),
  };
}

function parseV2Addresses(fam: number, block: Buffer): ProxyEndpoints | undefined {
  const transport = fam & 0x0f;
  const family = fam & 0xf0;
  if (family === PP2_FAM_UNSPEC || family === PP2_FAM_UNIX) return undefined;
  if (transport !== PP2_TRANS_STREAM) {
    throw new ProxyHeaderError(`unsupported PROXY v2 transport 0x${transport.toString(16)}`);
  }
  if (family === PP2_FAM_INET) {
    if (block.length < PP2_IPV4_BLOCK_BYTES) throw new ProxyHeaderError('short IPv4 block');
    return {
      sourceAddress: ipText(ipFromBytes(block.subarray(0, 4))),
      destinationAddress: ipText(ipFromBytes(block.subarray(4, 8))),
      sourcePort: block.readUInt16BE(8),
      destinationPort: block.readUInt16BE(10),
    };
  }
  if (family === PP2_FAM_INET6) {
    if (block.length < PP2_IPV6_BLOCK_BYTES) throw new ProxyHeaderError('short IPv6 block');
    return {
      sourceAddress: ipText(ipFromBytes(block.subarray(0, 16))),
      destinationAddress: ipText(ipFromBytes(block.subarray(16, 32))),
      sourcePort: block.readUInt16BE(32),
      destinationPort: block.readUInt16BE(34),
    };
  }
  throw new ProxyHeaderError(`unsupported PROXY v2 family 0x${family.toString(16)}`);
}

/** Is `prefix` (possibly shorter than `full`) the start of `full`? */
function startsLike(prefix: Buffer, full: Buffer): boolean {
  const n = Math.min(prefix.length, full.length);
  return prefix.subarray(0, n).equals(full.subarray(0, n));
}

export class ProxyHeaderReader {
  readonly #maxBytes: number;
  #buffered: Buffer = Buffer.alloc(0);
  #finished = false;

  constructor(maxBytes: number = DEFAULT_PROXY_HEADER_MAX_BYTES) {
    if (!Number.isInteger(maxBytes) || maxBytes < PP2_FIXED_HEADER_BYTES) {
      throw new RangeError(`maxBytes must be an integer ≥ ${PP2_FIXED_HEADER_BYTES}`);
    }
    this.#maxBytes = maxBytes;
  }

  /** Returns undefined while more bytes are needed; throws ProxyHeaderError on bad input. */
  push(chunk: Buffer): ProxyHeaderResult | undefined {
    if (this.#finished) {
      throw new ProxyHeaderError('PROXY header already read', 'UNHITCH_PROXY_HEADER_REUSED');
    }
    this.#buffered = this.#buffered.length === 0 ? chunk : Buffer.concat([this.#buffered, chunk]);
    const data = this.#buffered;
    if (data.length === 0) return undefined;
    const result = startsLike(data, PROXY_V2_SIGNATURE)
      ? this.#tryV2(data)
      : startsLike(data, PROXY_V1_PREFIX)
        ? this.#tryV1(data)
        : this.#fail('not a PROXY protocol header');
    if (result !== undefined) {
      this.#finished = true;
      this.#buffered = Buffer.alloc(0);
    }
    return result;
  }

  #fail(message: string): never {
    this.#finished = true;
    this.#buffered = Buffer.alloc(0);
    throw new ProxyHeaderError(message);
  }

  #tryV1(data: Buffer): ProxyHeaderResult | undefined {
    const limit = Math.min(PROXY_V1_MAX_LINE_BYTES, this.#maxBytes);
    const lf = data.indexOf(0x0a);
    if (lf === -1) {
      if (data.length >= limit) this.#fail(`PROXY v1 line longer than ${limit} bytes`);
      return undefined;
    }
    if (lf + 1 > limit) this.#fail(`PROXY v1 line longer than ${limit} bytes`);
    if (lf === 0 || data[lf - 1] !== 0x0d) this.#fail('PROXY v1 line must end with CRLF');
    const line = data.subarray(0, lf - 1).toString('latin1');
    try {
      const endpoints = parseV1Line(line);
      return { endpoints, header: data.subarray(0, lf + 1), rest: data.subarray(lf + 1) };
    } catch (error) {
      this.#fail(error instanceof Error ? error.message : String(error));
    }
  }

  #tryV2(data: Buffer): ProxyHeaderResult | undefined {
    if (data.length < PP2_FIXED_HEADER_BYTES) return undefined;
    const verCmd = data.readUInt8(12);
    const fam = data.readUInt8(13);
    const payloadLength = data.readUInt16BE(14);
    if ((verCmd & 0xf0) !== PP2_VERSION) this.#fail('unsupported PROXY v2 version');
    const command = verCmd & 0x0f;
    if (command !== PP2_CMD_LOCAL && command !== PP2_CMD_PROXY) {
      this.#fail(`unsupported PROXY v2 command 0x${command.toString(16)}`);
    }
    const total = PP2_FIXED_HEADER_BYTES + payloadLength;
    if (total > this.#maxBytes) this.#fail(`PROXY v2 header of ${total} bytes exceeds limit`);
    if (data.length < total) return undefined;
    const header = data.subarray(0, total);
    const rest = data.subarray(total);
    if (command === PP2_CMD_LOCAL) return { endpoints: undefined, header, rest };
    try {
      const endpoints = parseV2Addresses(fam, data.subarray(PP2_FIXED_HEADER_BYTES, total));
      return { endpoints, header, rest };
    } catch (error) {
      this.#fail(error instanceof Error ? error.message : String(error));
    }
  }
}
