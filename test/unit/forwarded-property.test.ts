/**
 * Properties of forwarded-for's HTTP/1.x following (forwarded.ts, http1.ts), over random
 * pipelined requests cut at random points:
 * - well-formed requests reach the backend byte for byte, each head without the client's
 *   X-Forwarded-For / X-Forwarded-Proto / Forwarded and with ours, bodies untouched;
 * - mangled streams (bare CR/LF, obs-fold, controls, stray colons, upgrades, responses in
 *   any order) never make it throw, refuse at most once, forward nothing after the FIN,
 *   and no head it forwards carries a client's own header.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  ForwardedFor,
  type ForwardedRejection,
  type ForwardedSink,
} from '../../src/proxy/forwarded.js';

const ADDRESS = '203.0.113.7';
const OURS = `X-Forwarded-For: ${ADDRESS}\r\nX-Forwarded-Proto: https\r\n`;
const CLIENT_HEADER = /(^|\n)(x-forwarded-for|x-forwarded-proto|forwarded)[ \t]*:/gi;

class Recorder implements ForwardedSink {
  readonly calls: Buffer[] = [];
  ended = false;
  rejection: ForwardedRejection | undefined;
  lostWith: Error | undefined;
  forward(bytes: Buffer): void {
    assert.equal(this.ended, false, 'nothing after the FIN');
    this.calls.push(Buffer.from(bytes));
  }
  endBackend(): void {
    this.ended = true;
  }
  holdClient(): void {}
  reject(rejection: ForwardedRejection): void {
    assert.equal(this.rejection, undefined, 'refused once');
    this.rejection = rejection;
  }
  lost(error: Error): void {
    this.lostWith = error;
  }
  text(): string {
    return Buffer.concat(this.calls).toString('latin1');
  }
}

/** Cuts `bytes` at the given points (taken modulo its length), in order. */
function cut(bytes: Buffer, points: readonly number[]): Buffer[] {
  const at = [...new Set(points.map((point) => point % (bytes.length + 1)))].sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let previous = 0;
  for (const point of at) {
    pieces.push(bytes.subarray(previous, point));
    previous = point;
  }
  pieces.push(bytes.subarray(previous));
  return pieces;
}

interface Request {
  /** What the client sends. */
  readonly sent: string;
  /** What the backend must get for it. */
  readonly expected: string;
}

const eol = fc.constantFrom('\r\n', '\n');
const token = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9-]{0,11}$/);
const value = fc.stringMatching(/^[!-~]([ -~]{0,20}[!-~])?$/);
/** Body bytes, whatever they look like (a request with its own X-Forwarded-For included). */
const bodyText = fc.oneof(
  fc.uint8Array({ maxLength: 40 }).map((bytes) => Buffer.from(bytes).toString('latin1')),
  fc.constant('GET /x HTTP/1.1\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n'),
);
const header = fc.tuple(
  fc.oneof(
    token.filter((name) => !/^(content-length|transfer-encoding|upgrade|connection)$/i.test(name)),
    fc.constantFrom('X-Forwarded-For', 'x-forwarded-for', 'X-FORWARDED-PROTO', 'Forwarded'),
  ),
  fc.constantFrom('', ' ', '  ', '\t'),
  value,
  fc.constantFrom('', ' ', '\t'),
  eol,
);
const chunk = fc.tuple(
  bodyText.filter((data) => data.length > 0),
  fc.constantFrom('', ';ext', ';a=b', ';q="x;y"', ' ;n'),
  eol,
  eol,
);
const body = fc.oneof(
  fc.constant({ kind: 'none' as const }),
  fc.record({ kind: fc.constant('length' as const), data: bodyText }),
  fc.record({
    kind: fc.constant('chunked' as const),
    chunks: fc.array(chunk, { maxLength: 4 }),
    trailers: fc.array(fc.tuple(token, value, eol), { maxLength: 2 }),
    last: eol,
  }),
);

const request: fc.Arbitrary<Request> = fc
  .record({
    method: fc.constantFrom('GET', 'POST', 'PUT', 'HEAD', 'OPTIONS', 'DELETE'),
    target: fc.stringMatching(/^\/[A-Za-z0-9?=&%.]{0,16}$/),
    version: fc.constantFrom('1.1', '1.0'),
    lineEnd: eol,
    headers: fc.array(header, { maxLength: 6 }),
    body,
    end: eol,
  })
  .map(({ method, target, version, lineEnd, headers, body: framing, end }) => {
    const lines = headers.map(
      ([name, before, text, after, ending]) => `${name}:${before}${text}${after}${ending}`,
    );
    const kept = headers
      .filter(([name]) => !/^(x-forwarded-for|x-forwarded-proto|forwarded)$/i.test(name))
      .map(([name, before, text, after, ending]) => `${name}:${before}${text}${after}${ending}`);
    let framingLine = '';
    let bodyBytes = '';
    if (framing.kind === 'length' && framing.data.length > 0) {
      framingLine = `Content-Length: ${framing.data.length}\r\n`;
      bodyBytes = framing.data;
    } else if (framing.kind === 'chunked') {
      framingLine = 'Transfer-Encoding: chunked\r\n';
      bodyBytes =
        framing.chunks
          .map(
            ([data, extension, sizeEnd, dataEnd]) =>
              `${data.length.toString(16)}${extension}${sizeEnd}${data}${dataEnd}`,
          )
          .join('') +
        `0${framing.last}` +
        framing.trailers.map(([name, text, ending]) => `${name}: ${text}${ending}`).join('') +
        framing.last;
    }
    const start = `${method} ${target} HTTP/${version}${lineEnd}`;
    return {
      sent: start + lines.join('') + framingLine + end + bodyBytes,
      expected: start + kept.join('') + framingLine + OURS + end + bodyBytes,
    };
  });

test('well-formed pipelined requests, cut anywhere: exact bytes, our header, none of theirs', () => {
  fc.assert(
    fc.property(
      fc.array(request, { minLength: 1, maxLength: 5 }),
      fc.array(fc.nat(), { maxLength: 12 }),
      (requests, points) => {
        const sink = new Recorder();
        const filter = new ForwardedFor({ clientAddress: ADDRESS, sink });
        const input = Buffer.from(requests.map((r) => r.sent).join(''), 'latin1');
        for (const piece of cut(input, points)) filter.clientData(piece);
        filter.clientEnd();
        assert.equal(sink.rejection, undefined, sink.rejection?.error.message);
        assert.equal(sink.text(), requests.map((r) => r.expected).join(''));
        assert.equal(sink.ended, true);
      },
    ),
    { numRuns: 1_500 },
  );
});

/** Bytes that break or confuse HTTP/1.x framing when dropped into a stream. */
const hostileBytes = fc.constantFrom(
  '\r',
  '\n',
  '\r\n',
  '\n\n',
  ' ',
  '\t',
  ':',
  '\x00',
  '\x7f',
  '\r\n ',
  '\r\n\t',
  'Transfer-Encoding: chunked\r\n',
  'Content-Length: 3\r\n',
  'Upgrade: websocket\r\nConnection: upgrade\r\n',
  'CONNECT a:443 HTTP/1.1\r\n\r\n',
  'HTTP/1.1 200 OK\r\n\r\n',
  'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
);
const responses = fc.array(
  fc.constantFrom(
    'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
    'HTTP/1.1 100 Continue\r\n\r\n',
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n',
    'HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n',
    'HTTP/1.1 204 No Content\r\n\r\n',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n',
    'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close',
    'garbage',
  ),
  { maxLength: 4 },
);

test('mangled streams and any responses: no throw, one refusal at most, no client header in a head', () => {
  fc.assert(
    fc.property(
      fc.array(request, { minLength: 1, maxLength: 4 }),
      fc.array(fc.tuple(fc.nat(), hostileBytes), { maxLength: 4 }),
      fc.array(fc.nat(), { maxLength: 8 }),
      responses,
      fc.boolean(),
      (requests, insertions, points, answers, backendFinFirst) => {
        let text = requests.map((r) => r.sent).join('');
        for (const [at, bytes] of insertions) {
          const index = at % (text.length + 1);
          text = text.slice(0, index) + bytes + text.slice(index);
        }
        const sink = new Recorder();
        const filter = new ForwardedFor({ clientAddress: ADDRESS, sink });
        const pieces = cut(Buffer.from(text, 'latin1'), points);
        pieces.forEach((piece, index) => {
          filter.clientData(piece);
          const answer = answers[index];
          if (answer !== undefined) filter.backendData(Buffer.from(answer, 'latin1'));
        });
        if (backendFinFirst) filter.backendEnd();
        // A head is forwarded in one piece with our lines in it: none may keep theirs.
        for (const call of sink.calls) {
          const forwarded = call.toString('latin1');
          if (!forwarded.includes(OURS)) continue;
          const theirs = forwarded.replace(OURS, '').match(CLIENT_HEADER);
          assert.equal(theirs, null, `client header forwarded: ${JSON.stringify(forwarded)}`);
        }
        filter.clientEnd();
        filter.backendEnd();
      },
    ),
    { numRuns: 3_000 },
  );
});
