/**
 * Optional X-Forwarded-For mode: rewrite the header block of the FIRST HTTP/1.x
 * request on a connection (for a tracker this is the WebSocket upgrade) and then get
 * out of the way so the caller can splice the sockets.
 *
 * We are the edge, so any X-Forwarded-For / X-Forwarded-Proto / Forwarded header the
 * client sent is removed before ours are added: bittorrent-tracker with trustProxy
 * believes the leftmost X-Forwarded-For entry, and a client must not choose it.
 *
 * Header lines are kept byte-for-byte; only removed lines disappear and our two lines
 * are inserted just before the empty line that ends the block. Line ends may be CRLF
 * or a bare LF (lenient backends accept bare LF, so we must see those lines too), and
 * obs-fold continuation lines of a removed header are removed with it.
 *
 * When the bytes are not an HTTP/1.x request, or the header block grows past
 * maxHeaderBytes, the buffered bytes go out unchanged and `outcome` says why, so the
 * caller may instead close the connection (strict deployments should: a passthrough
 * request carries no trustworthy X-Forwarded-For).
 */

import { UnhitchError } from '../errors.js';
import { ipText, peerAddress } from '../net/ip.js';

export const DEFAULT_MAX_HEADER_BYTES = 16384;

export type ForwardedOutcome =
  | 'pending' // still buffering the first request's header block
  | 'injected' // headers rewritten
  | 'passthrough-not-http' // first bytes are not an HTTP/1.x request line
  | 'passthrough-too-large'; // header block longer than maxHeaderBytes

export class ForwardedHeaderError extends UnhitchError<'UNHITCH_FORWARDED_ADDRESS'> {
  constructor(message: string) {
    super('UNHITCH_FORWARDED_ADDRESS', message);
    this.name = 'ForwardedHeaderError';
  }
}

const LF = 0x0a;
const CR = 0x0d;
const SPACE = 0x20;
const TAB = 0x09;
const REMOVED_HEADER_NAMES = new Set(['x-forwarded-for', 'x-forwarded-proto', 'forwarded']);
/** RFC 9110 token characters (method names are tokens). */
const TOKEN_CHAR = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]$/;
/** Longest method we wait for before declaring "not HTTP" (longest registered is ~17). */
const MAX_METHOD_BYTES = 32;
const REQUEST_LINE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [^ \r\n]+ HTTP\/1\.[01]\r?$/;

/** '::ffff:1.2.3.4' → '1.2.3.4'; trackers then see a plain IPv4 peer. */
function clientAddressForHeader(address: string): string {
  const parsed = peerAddress(address);
  if (parsed === undefined) throw new ForwardedHeaderError(`not an IP address: ${address}`);
  return ipText(parsed);
}

/**
 * Could `prefix` still become an HTTP request line? Checked on every chunk so that a
 * TLS ClientHello or binary junk is passed through at once instead of being held.
 */
function couldBeRequestStart(prefix: Buffer): boolean {
  const limit = Math.min(prefix.length, MAX_METHOD_BYTES + 1);
  for (let i = 0; i < limit; i++) {
    const byte = prefix[i] as number;
    if (byte === SPACE) return i > 0;
    if (!TOKEN_CHAR.test(String.fromCharCode(byte))) return false;
  }
  return prefix.length <= MAX_METHOD_BYTES;
}

/** Once the first line is complete it must be an HTTP/1.x request line. */
function firstLineCouldBeRequestLine(data: Buffer): boolean {
  const lf = data.indexOf(LF);
  if (lf === -1) return true;
  return REQUEST_LINE.test(data.subarray(0, lf).toString('latin1'));
}

/** Index just past the empty line ending the header block, or -1 if not complete. */
function findHeaderEnd(data: Buffer): number {
  let lineStart = 0;
  for (;;) {
    const lf = data.indexOf(LF, lineStart);
    if (lf === -1) return -1;
    const contentLength = lf - lineStart - (lf > lineStart && data[lf - 1] === CR ? 1 : 0);
    if (contentLength === 0 && lineStart > 0) return lf + 1;
    lineStart = lf + 1;
  }
}

/** Lines of the header block, each with its own terminator, without the final empty line. */
function splitLines(block: Buffer): Buffer[] {
  const lines: Buffer[] = [];
  let lineStart = 0;
  while (lineStart < block.length) {
    const lf = block.indexOf(LF, lineStart);
    const end = lf === -1 ? block.length : lf + 1;
    lines.push(block.subarray(lineStart, end));
    lineStart = end;
  }
  return lines;
}

function headerName(line: Buffer): string | undefined {
  const colon = line.indexOf(0x3a);
  if (colon === -1) return undefined;
  // Trim whitespace before the colon too: "X-Forwarded-For : x" is invalid, but a
  // lenient backend might accept it, so it is removed like the valid spelling.
  return line.subarray(0, colon).toString('latin1').trim().toLowerCase();
}

function rewriteHeaderBlock(block: Buffer, injected: Buffer): Buffer | undefined {
  const lines = splitLines(block);
  const requestLine = lines[0];
  if (requestLine === undefined) return undefined;
  const requestText = requestLine.toString('latin1').replace(/\n$/, '');
  if (!REQUEST_LINE.test(requestText)) return undefined;
  const emptyLine = lines.pop();
  if (emptyLine === undefined) return undefined;
  const kept: Buffer[] = [requestLine];
  let droppingFold = false;
  for (const line of lines.slice(1)) {
    const isContinuation = line[0] === SPACE || line[0] === TAB;
    if (isContinuation) {
      if (!droppingFold) kept.push(line);
      continue;
    }
    const name = headerName(line);
    droppingFold = name !== undefined && REMOVED_HEADER_NAMES.has(name);
    if (!droppingFold) kept.push(line);
  }
  return Buffer.concat([...kept, injected, emptyLine]);
}

export class ForwardedHeaderInjector {
  readonly #injected: Buffer;
  readonly #maxHeaderBytes: number;
  #buffered: Buffer = Buffer.alloc(0);
  #outcome: ForwardedOutcome = 'pending';

  constructor(options: { clientAddress: string; maxHeaderBytes?: number }) {
    const address = clientAddressForHeader(options.clientAddress);
    this.#injected = Buffer.from(
      `X-Forwarded-For: ${address}\r\nX-Forwarded-Proto: https\r\n`,
      'latin1',
    );
    this.#maxHeaderBytes = options.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
  }

  /** True once the first request has been handled; callers then splice directly. */
  get done(): boolean {
    return this.#outcome !== 'pending';
  }

  get outcome(): ForwardedOutcome {
    return this.#outcome;
  }

  /** Feed client bytes; returns the bytes to forward now (empty while buffering). */
  push(chunk: Buffer): Buffer {
    if (this.done) return chunk;
    const data = this.#buffered.length === 0 ? chunk : Buffer.concat([this.#buffered, chunk]);
    this.#buffered = Buffer.alloc(0);
    if (!couldBeRequestStart(data) || !firstLineCouldBeRequestLine(data)) {
      return this.#passThrough(data, 'passthrough-not-http');
    }
    const headerEnd = findHeaderEnd(data);
    if (headerEnd === -1) {
      if (data.length > this.#maxHeaderBytes) {
        return this.#passThrough(data, 'passthrough-too-large');
      }
      this.#buffered = data;
      return Buffer.alloc(0);
    }
    if (headerEnd > this.#maxHeaderBytes) return this.#passThrough(data, 'passthrough-too-large');
    const rewritten = rewriteHeaderBlock(data.subarray(0, headerEnd), this.#injected);
    if (rewritten === undefined) return this.#passThrough(data, 'passthrough-not-http');
    this.#outcome = 'injected';
    return Buffer.concat([rewritten, data.subarray(headerEnd)]);
  }

  #passThrough(data: Buffer, outcome: ForwardedOutcome): Buffer {
    this.#outcome = outcome;
    return data;
  }
}
