/**
 * Just enough HTTP/1.x to follow a connection's message boundaries in both directions
 * (RFC 9112): where a head ends, how its body is framed (Content-Length, chunked, until
 * close, none), and where the next message starts. It never changes a byte; forwarded.ts
 * decides what to do with the heads it finds.
 *
 * Heads are split on LF with an optional CR before it: lenient backends accept bare-LF
 * line ends, so a header hidden behind one must be seen here too.
 */

const LF = 0x0a;
const CR = 0x0d;
const SEMICOLON = 0x3b;

/** A message head: start line and header fields, each field name lower-cased. */
export interface MessageHead {
  readonly startLine: string;
  readonly fields: readonly HeaderField[];
  /** Every line of the head with its own terminator, the final empty line last. */
  readonly lines: readonly Buffer[];
}

export interface HeaderField {
  readonly name: string;
  readonly value: string;
}

export class HttpSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HttpSyntaxError';
  }
}

export type HeadScan =
  | { readonly complete: true; readonly end: number }
  | {
      readonly complete: false;
      /** Where the unfinished line starts. */
      readonly resumeAt: number;
      /** Bytes already searched for its LF (a long line is not searched again). */
      readonly searched: number;
    };

/**
 * Where the head that starts at data[0] ends (just past its empty line). `resumeAt`, from
 * the previous incomplete scan of the same growing buffer, skips the lines already seen.
 */
export function scanHead(data: Buffer, resumeAt = 0, searched = resumeAt): HeadScan {
  let lineStart = resumeAt;
  let searchFrom = Math.max(searched, resumeAt);
  for (;;) {
    const lf = data.indexOf(LF, searchFrom);
    if (lf === -1) return { complete: false, resumeAt: lineStart, searched: data.length };
    const contentLength = lf - lineStart - (lf > lineStart && data[lf - 1] === CR ? 1 : 0);
    if (contentLength === 0 && lineStart > 0) return { complete: true, end: lf + 1 };
    lineStart = lf + 1;
    searchFrom = lineStart;
  }
}

/** Lines of a complete head, each with its own terminator. */
function splitLines(head: Buffer): Buffer[] {
  const lines: Buffer[] = [];
  let lineStart = 0;
  while (lineStart < head.length) {
    const lf = head.indexOf(LF, lineStart);
    const end = lf === -1 ? head.length : lf + 1;
    lines.push(head.subarray(lineStart, end));
    lineStart = end;
  }
  return lines;
}

function lineText(line: Buffer): string {
  const end = line.length - (line[line.length - 1] === LF ? 1 : 0);
  const contentEnd = end - (end > 0 && line[end - 1] === CR ? 1 : 0);
  return line.subarray(0, contentEnd).toString('latin1');
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Field values: visible ASCII, obs-text, space and tab; no CR, LF, NUL or other controls. */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * Parses a complete head strictly: a field name must be a token directly followed by ':'
 * (RFC 9112 §5.1 tells servers to reject whitespace there), obs-fold continuation lines are
 * refused (§5.2 allows rejecting them), and no line may hide a CR, NUL or other control.
 * What a lenient backend could read differently from us is an error, never a guess.
 */
export function parseHead(head: Buffer): MessageHead {
  const lines = splitLines(head);
  const startLine = lines[0];
  if (startLine === undefined) throw new HttpSyntaxError('empty head');
  const fields: HeaderField[] = [];
  for (const line of lines.slice(1, -1)) {
    const text = lineText(line);
    if (text.startsWith(' ') || text.startsWith('\t')) {
      throw new HttpSyntaxError('obs-fold continuation line');
    }
    const colon = text.indexOf(':');
    const name = colon === -1 ? '' : text.slice(0, colon);
    if (!TOKEN.test(name)) throw new HttpSyntaxError(`bad header line ${JSON.stringify(text)}`);
    const value = text.slice(colon + 1).trim();
    if (!FIELD_VALUE.test(value)) throw new HttpSyntaxError(`bad value in header ${name}`);
    fields.push({ name: name.toLowerCase(), value });
  }
  const first = lineText(startLine);
  if (!FIELD_VALUE.test(first)) throw new HttpSyntaxError('control character in start line');
  return { startLine: first, fields, lines };
}

/** Comma-separated list members of every field called `name`, trimmed and lower-cased. */
export function listValues(head: MessageHead, name: string): string[] {
  return head.fields
    .filter((field) => field.name === name)
    .flatMap((field) => field.value.split(','))
    .map((member) => member.trim().toLowerCase())
    .filter((member) => member.length > 0);
}

export type BodyFraming =
  | { readonly kind: 'none' }
  | { readonly kind: 'length'; readonly bytes: number }
  | { readonly kind: 'chunked' }
  | { readonly kind: 'until-close' };

/**
 * How the body after `head` is framed (RFC 9112 §6.3). Both Transfer-Encoding and
 * Content-Length, differing lengths, or a final coding other than chunked are request
 * smuggling material: an error, whatever a backend might have made of them.
 */
export function bodyFraming(head: MessageHead, isRequest: boolean): BodyFraming {
  const codings = listValues(head, 'transfer-encoding');
  const lengths = listValues(head, 'content-length');
  if (codings.length > 0) {
    if (lengths.length > 0) throw new HttpSyntaxError('both Transfer-Encoding and Content-Length');
    if (codings[codings.length - 1] !== 'chunked') {
      if (isRequest) throw new HttpSyntaxError('request body not chunked last');
      return { kind: 'until-close' };
    }
    return { kind: 'chunked' };
  }
  if (lengths.length > 0) {
    const first = lengths[0] as string;
    if (!/^[0-9]{1,15}$/.test(first) || lengths.some((length) => length !== first)) {
      throw new HttpSyntaxError(`bad Content-Length ${JSON.stringify(lengths.join(','))}`);
    }
    const bytes = Number(first);
    return bytes === 0 ? { kind: 'none' } : { kind: 'length', bytes };
  }
  return isRequest ? { kind: 'none' } : { kind: 'until-close' };
}

/**
 * A head arriving in pieces, appended in place into spare capacity that doubles: a head
 * sent a byte at a time (1-byte TLS records) costs linear copying, not a copy of all of it
 * per byte. Bytes before `length` are never written again, so a view stays valid; reset()
 * drops the store instead of reusing it.
 */
export class HeadBuffer {
  #store: Buffer = Buffer.alloc(0);
  #length = 0;

  get length(): number {
    return this.#length;
  }

  /** The bytes so far (a view, not a copy). */
  get bytes(): Buffer {
    return this.#store.subarray(0, this.#length);
  }

  /** Appends a copy of `data`; returns the bytes so far. */
  append(data: Uint8Array): Buffer {
    const length = this.#length + data.length;
    if (length > this.#store.length) {
      const grown = Buffer.allocUnsafe(Math.max(256, length * 2));
      this.#store.copy(grown, 0, 0, this.#length);
      this.#store = grown;
    }
    this.#store.set(data, this.#length);
    this.#length = length;
    return this.bytes;
  }

  reset(): void {
    this.#store = Buffer.alloc(0);
    this.#length = 0;
  }
}

/** Longest chunk-size line (size, extensions) or trailer line we wait for. */
const MAX_CHUNK_LINE_BYTES = 4096;

type ChunkState =
  | { readonly at: 'size-line'; readonly seen: number }
  | { readonly at: 'data'; readonly left: number }
  | { readonly at: 'data-end'; readonly seenCr: boolean }
  | { readonly at: 'trailer-line'; readonly seen: number; readonly empty: boolean };

/**
 * Follows a body through its framing without copying it: `consume` says how many bytes
 * of `data` belong to the body; `done` turns true after the last one.
 */
export class BodyScanner {
  #lengthLeft: number;
  #chunk: ChunkState | undefined;
  #done: boolean;
  #sizeLine: number[] = [];

  constructor(framing: BodyFraming) {
    this.#lengthLeft = framing.kind === 'length' ? framing.bytes : 0;
    this.#chunk = framing.kind === 'chunked' ? { at: 'size-line', seen: 0 } : undefined;
    this.#done = framing.kind === 'none';
    if (framing.kind === 'until-close') this.#lengthLeft = Number.POSITIVE_INFINITY;
  }

  get done(): boolean {
    return this.#done;
  }

  /** Framed by the connection's close: the sender's FIN ends it whole. */
  get untilClose(): boolean {
    return this.#chunk === undefined && this.#lengthLeft === Number.POSITIVE_INFINITY;
  }

  /** Bytes at the start of `data` that belong to this body (all of it if it goes on). */
  consume(data: Uint8Array): number {
    if (this.#done) return 0;
    if (this.#chunk === undefined) {
      const taken = Math.min(this.#lengthLeft, data.length);
      this.#lengthLeft -= taken;
      if (this.#lengthLeft === 0) this.#done = true;
      return taken;
    }
    let index = 0;
    while (index < data.length && !this.#done) index += this.#chunkStep(data, index);
    return index;
  }

  /** One step of chunked parsing from data[index]; returns the bytes it used (≥ 1). */
  #chunkStep(data: Uint8Array, index: number): number {
    const state = this.#chunk as ChunkState;
    const byte = data[index] as number;
    switch (state.at) {
      case 'size-line': {
        if (byte !== LF) {
          if (state.seen + 1 > MAX_CHUNK_LINE_BYTES)
            throw new HttpSyntaxError('chunk line too long');
          this.#sizeLine.push(byte);
          this.#chunk = { at: 'size-line', seen: state.seen + 1 };
          return 1;
        }
        const size = parseChunkSize(this.#sizeLine);
        this.#sizeLine = [];
        this.#chunk =
          size === 0 ? { at: 'trailer-line', seen: 0, empty: true } : { at: 'data', left: size };
        return 1;
      }
      case 'data': {
        const taken = Math.min(state.left, data.length - index);
        const left = state.left - taken;
        this.#chunk = left === 0 ? { at: 'data-end', seenCr: false } : { at: 'data', left };
        return taken;
      }
      case 'data-end': {
        if (byte === CR && !state.seenCr) {
          this.#chunk = { at: 'data-end', seenCr: true };
          return 1;
        }
        if (byte !== LF) throw new HttpSyntaxError('chunk data not followed by a line end');
        this.#chunk = { at: 'size-line', seen: 0 };
        return 1;
      }
      case 'trailer-line': {
        if (byte === LF) {
          if (state.empty) this.#done = true;
          else this.#chunk = { at: 'trailer-line', seen: 0, empty: true };
          return 1;
        }
        if (state.seen + 1 > MAX_CHUNK_LINE_BYTES) throw new HttpSyntaxError('trailer too long');
        // A CR just before the LF keeps the line empty.
        const empty = state.empty && byte === CR && state.seen === 0;
        this.#chunk = { at: 'trailer-line', seen: state.seen + 1, empty };
        return 1;
      }
    }
  }
}

function parseChunkSize(line: number[]): number {
  let end = line.length;
  if (end > 0 && line[end - 1] === CR) end -= 1;
  const semicolon = line.indexOf(SEMICOLON);
  if (semicolon !== -1 && semicolon < end) end = semicolon;
  const text = Buffer.from(line.slice(0, end)).toString('latin1').trim();
  if (!/^[0-9a-fA-F]{1,12}$/.test(text)) {
    throw new HttpSyntaxError(`bad chunk size ${JSON.stringify(text)}`);
  }
  return Number.parseInt(text, 16);
}
