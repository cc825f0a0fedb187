/**
 * forwarded-for: every HTTP/1.x request on a connection reaches the backend with our
 * `X-Forwarded-For: <client>` and `X-Forwarded-Proto: https`, and without any
 * X-Forwarded-For / X-Forwarded-Proto / Forwarded the client sent (bittorrent-tracker with
 * trustProxy believes the left-most X-Forwarded-For of each request, HTTP announces
 * included). That holds until the connection stops being HTTP: a 101 (or a 2xx to
 * CONNECT) from the backend. From then on bytes pass untouched both ways.
 *
 * So both directions are followed (http1.ts): client → backend request by request (head,
 * then a body framed by Content-Length or chunked, then the next head), backend → client
 * response by response, to see which request a 101 answers. After a request that asks for
 * an upgrade, client bytes are held (the client is paused past a bound) until its answer
 * is known: a 101 lets them through untouched, anything else makes them the next request.
 *
 * What cannot be forwarded safely is refused rather than passed on: a head longer than
 * maxHeaderBytes gets `431 Request Header Fields Too Large`, anything that is not a
 * well-formed HTTP/1.x request (or is framed ambiguously) gets `400 Bad Request`, each with
 * Connection: close, sent once the responses the backend owes for earlier requests are
 * through. Header lines are kept byte for byte; ours go just before the empty line.
 */

import { type UnhitchCode, UnhitchError } from '../errors.js';
import { ipText, peerAddress } from '../net/ip.js';
import type { ConnectionFailureReason } from './events.js';
import {
  BodyScanner,
  bodyFraming,
  HeadBuffer,
  HttpSyntaxError,
  listValues,
  type MessageHead,
  parseHead,
  scanHead,
} from './http1.js';

export const DEFAULT_MAX_HEADER_BYTES = 16384;
/** A response head longer than this cannot be followed (the backend is not HTTP/1.x). */
const MAX_RESPONSE_HEAD_BYTES = 65536;
/** Client bytes held while an upgrade's answer is pending, before the client is paused. */
const MAX_HELD_BYTES = 65536;

export class ForwardedHeaderError extends UnhitchError<'UNHITCH_FORWARDED_ADDRESS'> {
  constructor(message: string) {
    super('UNHITCH_FORWARDED_ADDRESS', message);
    this.name = 'ForwardedHeaderError';
  }
}

export type ForwardedRejectionReason = Extract<
  ConnectionFailureReason,
  'request_head_too_large' | 'request_invalid' | 'request_head_timeout'
>;

export interface ForwardedRejection {
  readonly reason: ForwardedRejectionReason;
  readonly error: UnhitchError;
  /** The complete HTTP response for the client; the connection closes after it. */
  readonly response: Buffer;
}

/** Where the filter's decisions go: the splice's sockets. */
export interface ForwardedSink {
  /** Bytes for the backend, in order. */
  forward(bytes: Buffer): void;
  /** The client's FIN, once every byte before it has been forwarded. */
  endBackend(): void;
  /** Stop (true) or restart (false) reading the client while bytes are held. */
  holdClient(hold: boolean): void;
  /** Answer the client with `rejection.response` and close; called at most once. */
  reject(rejection: ForwardedRejection): void;
  /** The backend's byte stream cannot be followed as HTTP/1.x: tear the pair down. */
  lost(error: UnhitchError): void;
}

const LF = 0x0a;
const CR = 0x0d;
const REMOVED_HEADER_NAMES = new Set(['x-forwarded-for', 'x-forwarded-proto', 'forwarded']);
const TOKEN_CHAR = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]$/;
/** Longest method we wait for (the longest registered is 17 bytes). */
const MAX_METHOD_BYTES = 32;
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) [^ ]+ HTTP\/1\.[01]$/;
const STATUS_LINE = /^HTTP\/1\.[01] ([0-9]{3})(?: |$)/;

function response(status: number, text: string): Buffer {
  return Buffer.from(
    `HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`,
    'latin1',
  );
}
/** What each refusal answers and the code its log line carries. */
const REJECTIONS: Readonly<
  Record<ForwardedRejectionReason, { readonly response: Buffer; readonly code: UnhitchCode }>
> = {
  request_head_too_large: {
    response: response(431, 'Request Header Fields Too Large'),
    code: 'UNHITCH_FORWARDED_REQUEST_TOO_LARGE',
  },
  request_invalid: {
    response: response(400, 'Bad Request'),
    code: 'UNHITCH_FORWARDED_REQUEST_INVALID',
  },
  request_head_timeout: {
    response: response(408, 'Request Timeout'),
    code: 'UNHITCH_FORWARDED_REQUEST_TIMEOUT',
  },
};

/**
 * The header lines added to every request of a client at `address`; '::ffff:1.2.3.4'
 * becomes '1.2.3.4' (trackers then see a plain IPv4 peer). Throws ForwardedHeaderError
 * for an address that is not an IP: callers check before they connect the backend.
 */
export function forwardedHeaderLines(address: string): Buffer {
  const parsed = peerAddress(address);
  if (parsed === undefined) throw new ForwardedHeaderError(`not an IP address: ${address}`);
  return Buffer.from(
    `X-Forwarded-For: ${ipText(parsed)}\r\nX-Forwarded-Proto: https\r\n`,
    'latin1',
  );
}

/**
 * Could `prefix` (the start of a head, leading empty lines removed) still become a request
 * line? Checked on every chunk, so junk is refused at once instead of after 16 KiB.
 */
function couldBeRequestStart(prefix: Buffer): boolean {
  const limit = Math.min(prefix.length, MAX_METHOD_BYTES + 1);
  for (let i = 0; i < limit; i++) {
    const byte = prefix[i] as number;
    if (byte === 0x20) return i > 0;
    if (!TOKEN_CHAR.test(String.fromCharCode(byte))) return false;
  }
  return prefix.length <= MAX_METHOD_BYTES;
}

/** Leading empty lines before a request line (RFC 9112 §2.2 lets servers skip them). */
function leadingEmptyLineBytes(data: Buffer): number {
  let index = 0;
  for (;;) {
    if (data[index] === LF) index += 1;
    else if (data[index] === CR && data[index + 1] === LF) index += 2;
    else return index;
  }
}

interface PendingRequest {
  readonly method: string;
  /** Upgrade (with Connection: upgrade) or CONNECT: a 101 / 2xx makes it a tunnel. */
  readonly upgrade: boolean;
}

type ClientState =
  | { readonly at: 'head' }
  | { readonly at: 'body'; readonly body: BodyScanner; readonly upgrade: boolean }
  | { readonly at: 'await-upgrade' }
  | { readonly at: 'tunnel' }
  | { readonly at: 'rejected' };

type ResponseState =
  | { readonly at: 'head' }
  | { readonly at: 'body'; readonly body: BodyScanner }
  | { readonly at: 'tunnel' }
  | { readonly at: 'lost' };

export interface ForwardedForOptions {
  /** The client's address, or the lines forwardedHeaderLines made of it. */
  readonly clientAddress: string | Buffer;
  readonly sink: ForwardedSink;
  readonly maxHeaderBytes?: number;
  /**
   * request-head-timeout: each request head must be complete this long after the filter
   * starts (the first head) or after its own first byte (the next ones); else 408 and
   * close. One deadline for the whole head: a head trickled in byte by byte gets no more.
   * Undefined: no deadline.
   */
  readonly headTimeoutMs?: number | undefined;
}

function headDeadlinePassed(filter: ForwardedFor): void {
  filter.headTimedOut();
}

export class ForwardedFor {
  readonly #injected: Buffer;
  readonly #maxHeaderBytes: number;
  readonly #sink: ForwardedSink;
  readonly #headTimeoutMs: number | undefined;
  /** Armed while a request head is awaited (request-head-timeout). */
  #headDeadline: NodeJS.Timeout | undefined;
  #client: ClientState = { at: 'head' };
  /** The head being read (leading empty lines already dropped). */
  readonly #head = new HeadBuffer();
  #headResumeAt = 0;
  #headSearched = 0;
  /** Client bytes after an upgrade request, until its answer is known. */
  #held: Buffer[] = [];
  #heldBytes = 0;
  #clientEnded = false;
  /** Requests forwarded whose final response has not been seen to its end. */
  readonly #awaiting: PendingRequest[] = [];
  #rejection: ForwardedRejection | undefined;
  #response: ResponseState = { at: 'head' };
  readonly #responseHead = new HeadBuffer();
  #responseResumeAt = 0;
  #responseSearched = 0;

  constructor(options: ForwardedForOptions) {
    const client = options.clientAddress;
    this.#injected = typeof client === 'string' ? forwardedHeaderLines(client) : client;
    this.#maxHeaderBytes = options.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
    this.#sink = options.sink;
    this.#headTimeoutMs = options.headTimeoutMs;
    // The first head is awaited from now on (the backend connection is up), bytes or not.
    this.#armHeadDeadline();
  }

  #armHeadDeadline(): void {
    if (this.#headTimeoutMs === undefined || this.#headDeadline !== undefined) return;
    // One timer per awaited head, never per chunk; unref'd: a connection keeps the
    // process alive through its sockets, not through this.
    this.#headDeadline = setTimeout(headDeadlinePassed, this.#headTimeoutMs, this).unref();
  }

  #clearHeadDeadline(): void {
    if (this.#headDeadline === undefined) return;
    clearTimeout(this.#headDeadline);
    this.#headDeadline = undefined;
  }

  /** request-head-timeout ran out with a head still incomplete: 408, then close. */
  headTimedOut(): void {
    this.#headDeadline = undefined;
    if (this.#client.at !== 'head') return;
    const seconds = (this.#headTimeoutMs ?? 0) / 1000;
    this.#reject(
      'request_head_timeout',
      new Error(`no complete request head within ${seconds} s (${this.#head.length} bytes read)`),
    );
  }

  /** The connection is over: no deadline may fire for it. */
  close(): void {
    this.#clearHeadDeadline();
  }

  /** True while client bytes are held for an upgrade's answer (or after a rejection). */
  get holding(): boolean {
    return this.#client.at === 'await-upgrade' || this.#client.at === 'rejected';
  }

  /** Client bytes read but not forwarded yet: a partial head, bytes held for an upgrade. */
  get pendingBytes(): number {
    return this.#head.length + this.#heldBytes;
  }

  /** The connection upgraded: both directions pass untouched. */
  get tunnel(): boolean {
    return this.#client.at === 'tunnel';
  }

  // --- client → backend -------------------------------------------------------------

  clientData(chunk: Buffer): void {
    const state = this.#client;
    if (state.at === 'tunnel') this.#sink.forward(chunk);
    else if (state.at === 'await-upgrade') this.#hold(chunk);
    else if (state.at !== 'rejected') this.#process(chunk);
  }

  /** The client's FIN: whatever is buffered goes first (nothing it sent may vanish). */
  clientEnd(): void {
    this.#clientEnded = true;
    // An incomplete head goes on as it is (below): nothing is awaited from this client.
    this.#clearHeadDeadline();
    const state = this.#client;
    if (state.at === 'rejected' || state.at === 'await-upgrade') return; // ended later
    if (this.#head.length > 0) {
      // An incomplete head: no backend acts on it as a request, so it goes as it is.
      this.#sink.forward(this.#head.bytes);
      this.#head.reset();
    }
    this.#sink.endBackend();
  }

  #process(input: Buffer): void {
    let data = input;
    while (data.length > 0) {
      const state = this.#client;
      if (state.at === 'tunnel') {
        this.#sink.forward(data);
        return;
      }
      if (state.at === 'await-upgrade') {
        this.#hold(data);
        return;
      }
      if (state.at === 'rejected') return;
      if (state.at === 'body') {
        let used: number;
        try {
          used = state.body.consume(data);
        } catch (error) {
          this.#reject('request_invalid', error as Error, true);
          return;
        }
        if (used > 0) this.#sink.forward(data.subarray(0, used));
        data = data.subarray(used);
        if (state.body.done)
          this.#client = state.upgrade ? { at: 'await-upgrade' } : { at: 'head' };
        continue;
      }
      data = this.#readHead(data);
    }
  }

  /** Head state: buffer until the head is complete, then forward it rewritten. */
  #readHead(data: Buffer): Buffer {
    // A later head's deadline runs from its first byte (the first one's from the start).
    this.#armHeadDeadline();
    /** Whether `head` is the buffer's own bytes (else it must be copied in to be kept). */
    let buffered = this.#head.length > 0;
    let head = buffered ? this.#head.append(data) : data;
    if (this.#headResumeAt === 0) {
      const skip = leadingEmptyLineBytes(head);
      if (skip > 0) {
        head = head.subarray(skip);
        buffered = false;
        this.#head.reset();
        this.#headSearched = 0;
      }
      // A lone CR may be the start of a CRLF: wait for its LF.
      if (head.length === 1 && head[0] === CR) {
        if (!buffered) this.#head.append(head);
        return Buffer.alloc(0);
      }
    }
    if (head.length > 0 && !couldBeRequestStart(head)) {
      this.#reject('request_invalid', new Error('not an HTTP/1.x request'), false);
      return Buffer.alloc(0);
    }
    const scan = scanHead(head, this.#headResumeAt, this.#headSearched);
    if (!scan.complete) {
      if (head.length > this.#maxHeaderBytes) {
        this.#reject(
          'request_head_too_large',
          new Error(`head over ${this.#maxHeaderBytes} bytes`),
        );
        return Buffer.alloc(0);
      }
      if (!buffered) this.#head.append(head);
      this.#headResumeAt = scan.resumeAt;
      this.#headSearched = scan.searched;
      return Buffer.alloc(0);
    }
    this.#head.reset();
    this.#headResumeAt = 0;
    this.#headSearched = 0;
    this.#clearHeadDeadline();
    if (scan.end > this.#maxHeaderBytes) {
      this.#reject('request_head_too_large', new Error(`head of ${scan.end} bytes`));
      return Buffer.alloc(0);
    }
    this.#request(head.subarray(0, scan.end));
    return head.subarray(scan.end);
  }

  #request(bytes: Buffer): void {
    let head: MessageHead;
    let method: string;
    let body: BodyScanner;
    try {
      head = parseHead(bytes);
      const requestLine = REQUEST_LINE.exec(head.startLine);
      if (requestLine === null) throw new HttpSyntaxError('not an HTTP/1.x request line');
      method = requestLine[1] as string;
      body = new BodyScanner(bodyFraming(head, true));
    } catch (error) {
      this.#reject('request_invalid', error as Error);
      return;
    }
    const upgrade =
      method === 'CONNECT' ||
      (head.fields.some((field) => field.name === 'upgrade') &&
        listValues(head, 'connection').includes('upgrade'));
    const kept = head.lines.slice(0, -1).filter((_line, index) => {
      const name = index === 0 ? undefined : head.fields[index - 1]?.name;
      return name === undefined || !REMOVED_HEADER_NAMES.has(name);
    });
    const emptyLine = head.lines[head.lines.length - 1] as Buffer;
    this.#awaiting.push({ method, upgrade });
    this.#sink.forward(Buffer.concat([...kept, this.#injected, emptyLine]));
    if (body.done) this.#client = upgrade ? { at: 'await-upgrade' } : { at: 'head' };
    else this.#client = { at: 'body', body, upgrade };
  }

  #hold(data: Buffer): void {
    this.#held.push(data);
    this.#heldBytes += data.length;
    if (this.#heldBytes > MAX_HELD_BYTES) this.#sink.holdClient(true);
  }

  /** The upgrade's answer is known: held bytes go on (as a tunnel or as requests). */
  #release(next: 'tunnel' | 'head'): void {
    const held = this.#held;
    this.#held = [];
    this.#heldBytes = 0;
    if (next === 'tunnel') this.#clearHeadDeadline();
    if (next === 'tunnel' && this.#head.length > 0) {
      held.unshift(this.#head.bytes);
      this.#head.reset();
    }
    this.#client = { at: next };
    for (const chunk of held) this.clientData(chunk);
    if (!this.holding) this.#sink.holdClient(false);
    if (this.#clientEnded && !this.holding) this.clientEnd();
  }

  /**
   * Refuse the rest of the connection. The answer waits for the responses the backend
   * still owes (it must not land in the middle of one), except when a request is half
   * forwarded: its response may never come.
   */
  #reject(reason: ForwardedRejectionReason, cause: Error, now = false): void {
    const { code, response } = REJECTIONS[reason];
    this.#clearHeadDeadline();
    this.#client = { at: 'rejected' };
    this.#head.reset();
    this.#held = [];
    this.#sink.holdClient(true);
    this.#rejection = {
      reason,
      error: new UnhitchError(code, cause.message, { cause }),
      response,
    };
    if (now || this.#awaiting.length === 0) this.#sendRejection();
  }

  #sendRejection(): void {
    const rejection = this.#rejection;
    if (rejection === undefined) return;
    this.#rejection = undefined;
    this.#sink.reject(rejection);
  }

  // --- backend → client (observed, never changed) --------------------------------------

  backendData(bytes: Uint8Array): void {
    let data: Uint8Array = bytes;
    while (data.length > 0) {
      const state = this.#response;
      if (state.at === 'tunnel' || state.at === 'lost') return;
      if (state.at === 'body') {
        let used: number;
        try {
          used = state.body.consume(data);
        } catch (error) {
          this.#lose(error as Error);
          return;
        }
        data = data.subarray(used);
        if (state.body.done) this.#responseComplete();
        continue;
      }
      const buffered = this.#responseHead.length > 0;
      const head = buffered
        ? this.#responseHead.append(data)
        : Buffer.from(data.buffer, data.byteOffset, data.length);
      const scan = scanHead(head, this.#responseResumeAt, this.#responseSearched);
      if (!scan.complete) {
        if (head.length > MAX_RESPONSE_HEAD_BYTES) {
          this.#lose(new Error(`response head over ${MAX_RESPONSE_HEAD_BYTES} bytes`));
          return;
        }
        // Copied: `bytes` is the socket's read buffer, reused by the next read.
        if (!buffered) this.#responseHead.append(head);
        this.#responseResumeAt = scan.resumeAt;
        this.#responseSearched = scan.searched;
        return;
      }
      this.#responseHead.reset();
      this.#responseResumeAt = 0;
      this.#responseSearched = 0;
      this.#responseHeadSeen(head.subarray(0, scan.end));
      data = head.subarray(scan.end);
    }
  }

  #responseHeadSeen(bytes: Buffer): void {
    let head: MessageHead;
    let status: number;
    try {
      head = parseHead(bytes);
      const statusLine = STATUS_LINE.exec(head.startLine);
      if (statusLine === null) throw new HttpSyntaxError('not an HTTP/1.x status line');
      status = Number(statusLine[1]);
    } catch (error) {
      this.#lose(error as Error);
      return;
    }
    if (status === 101) {
      this.#upgraded();
      return;
    }
    if (status < 200) return; // 100 Continue, 103 Early Hints: the final answer follows
    const request = this.#awaiting[0];
    if (request?.method === 'CONNECT' && status < 300) {
      this.#upgraded();
      return;
    }
    let body: BodyScanner;
    try {
      const noBody = request?.method === 'HEAD' || status === 204 || status === 304;
      body = new BodyScanner(noBody ? { kind: 'none' } : bodyFraming(head, false));
    } catch (error) {
      this.#lose(error as Error);
      return;
    }
    this.#response = { at: 'body', body };
    if (body.done) this.#responseComplete();
  }

  #responseComplete(): void {
    this.#response = { at: 'head' };
    const answered = this.#awaiting.shift();
    // An upgrade declined (e.g. 400 or 426): what the client sent since is HTTP again.
    if (answered?.upgrade && this.#client.at === 'await-upgrade') this.#release('head');
    if (this.#awaiting.length === 0) this.#sendRejection();
  }

  /**
   * The backend's FIN: no response owed will come now. A refusal waiting for them goes
   * out at once (true: the sink's reject closes the client), unless the backend stopped in
   * the middle of a framed response, where our answer would read as part of its body.
   */
  backendEnd(): boolean {
    if (this.#rejection === undefined) return false;
    const response = this.#response;
    const atBoundary =
      (response.at === 'head' && this.#responseHead.length === 0) ||
      (response.at === 'body' && response.body.untilClose);
    if (!atBoundary) return false;
    this.#sendRejection();
    return true;
  }

  #upgraded(): void {
    this.#response = { at: 'tunnel' };
    this.#awaiting.length = 0;
    if (this.#client.at === 'rejected') this.#sendRejection();
    else this.#release('tunnel');
  }

  #lose(cause: Error): void {
    this.#response = { at: 'lost' };
    this.#sink.lost(
      new UnhitchError(
        'UNHITCH_FORWARDED_RESPONSE_INVALID',
        `cannot follow the backend's HTTP/1.x responses: ${cause.message}`,
        { cause },
      ),
    );
  }
}
