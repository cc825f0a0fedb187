import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ForwardedFor,
  type ForwardedRejection,
  type ForwardedSink,
} from '../../src/proxy/forwarded.js';

const OURS = 'X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n';
const UPGRADE =
  'GET /announce HTTP/1.1\r\n' +
  'Host: tracker.example\r\n' +
  'Upgrade: websocket\r\n' +
  'Connection: Upgrade\r\n' +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
  'Sec-WebSocket-Version: 13\r\n' +
  '\r\n';
const UPGRADE_INJECTED = `${UPGRADE.slice(0, -2)}${OURS}\r\n`;
const SWITCHING =
  'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n';

/** What the filter did, as the splice would have carried it out. */
class Recorder implements ForwardedSink {
  forwarded: Buffer[] = [];
  ended = false;
  holding = false;
  rejection: ForwardedRejection | undefined;
  lostWith: Error | undefined;
  forward(bytes: Buffer): void {
    assert.equal(this.ended, false, 'nothing after the FIN');
    this.forwarded.push(Buffer.from(bytes));
  }
  endBackend(): void {
    this.ended = true;
  }
  holdClient(hold: boolean): void {
    this.holding = hold;
  }
  reject(rejection: ForwardedRejection): void {
    assert.equal(this.rejection, undefined, 'rejected once');
    this.rejection = rejection;
  }
  lost(error: Error): void {
    this.lostWith = error;
  }
  text(): string {
    return Buffer.concat(this.forwarded).toString('latin1');
  }
}

/** Read through a call: an assert.equal(…, undefined) before narrows the field for good. */
function rejectionOf(sink: Recorder): ForwardedRejection | undefined {
  return sink.rejection;
}

function filter(maxHeaderBytes?: number): { filter: ForwardedFor; sink: Recorder } {
  const sink = new Recorder();
  return {
    sink,
    filter: new ForwardedFor({
      clientAddress: '203.0.113.7',
      sink,
      ...(maxHeaderBytes === undefined ? {} : { maxHeaderBytes }),
    }),
  };
}

function client(target: ForwardedFor, ...chunks: string[]): void {
  for (const chunk of chunks) target.clientData(Buffer.from(chunk, 'latin1'));
}

function backend(target: ForwardedFor, ...chunks: string[]): void {
  for (const chunk of chunks) target.backendData(Buffer.from(chunk, 'latin1'));
}

const injected = (head: string): string => `${head.slice(0, -2)}${OURS}\r\n`;

test('every request of a keep-alive connection gets the headers; client copies are removed', () => {
  const first = 'GET /announce?a=1 HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n';
  const second =
    'GET /announce?a=2 HTTP/1.1\r\nx-forwarded-for: 7.7.7.7\r\nX-FORWARDED-PROTO: http\r\n' +
    'Forwarded: for=7.7.7.7\r\nX-Forwarded-Host: kept\r\nX-Real-IP: 5.5.5.5\r\n\r\n';
  const { filter: target, sink } = filter();
  client(target, first);
  assert.equal(sink.text(), `GET /announce?a=1 HTTP/1.1\r\nHost: t\r\n${OURS}\r\n`);
  backend(target, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  client(target, second);
  assert.equal(
    sink.text().slice(sink.text().indexOf('GET /announce?a=2')),
    `GET /announce?a=2 HTTP/1.1\r\nX-Forwarded-Host: kept\r\nX-Real-IP: 5.5.5.5\r\n${OURS}\r\n`,
  );
});

test('pipelined requests with Content-Length and chunked bodies: every split gives the same bytes', () => {
  // Bodies that look like requests with their own X-Forwarded-For pass as body bytes.
  const fakeRequest = 'GET /x HTTP/1.1\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n';
  const post = `POST /a HTTP/1.1\r\nContent-Length: ${fakeRequest.length}\r\n\r\n`;
  const chunked =
    'POST /b HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n' +
    `${fakeRequest.length.toString(16)};ext=1\r\n${fakeRequest}\r\n0\r\nTrailer: x\r\n\r\n`;
  const last = 'GET /c HTTP/1.1\r\nX-Forwarded-For: 8.8.8.8\r\n\r\n';
  const input = post + fakeRequest + chunked + last;
  const expected =
    injected(post) +
    fakeRequest +
    injected('POST /b HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n') +
    chunked.slice(chunked.indexOf('\r\n\r\n') + 4) +
    `GET /c HTTP/1.1\r\n${OURS}\r\n`;
  for (let cut = 0; cut <= input.length; cut++) {
    const { filter: target, sink } = filter();
    client(target, input.slice(0, cut), input.slice(cut));
    assert.equal(sink.text(), expected, `cut at ${cut}`);
    assert.equal(sink.rejection, undefined);
  }
  // And byte by byte.
  const { filter: target, sink } = filter();
  client(target, ...input.split(''));
  assert.equal(sink.text(), expected);
});

test('upgrade: bytes after it are held until the 101, then pass untouched both ways', () => {
  const { filter: target, sink } = filter();
  client(target, UPGRADE);
  assert.equal(sink.text(), UPGRADE_INJECTED);
  // Looks like a request, but it is sent after an upgrade request: held, not parsed yet.
  const frames = 'GET /y HTTP/1.1\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n';
  client(target, frames);
  assert.equal(sink.text(), UPGRADE_INJECTED, 'held while the answer is pending');
  assert.equal(target.holding, true);
  backend(target, SWITCHING, '\x81\x05hello');
  assert.equal(target.tunnel, true);
  client(target, 'GET /z HTTP/1.1\r\nX-Forwarded-For: 9.9.9.9\r\n\r\n');
  assert.equal(
    sink.text(),
    `${UPGRADE_INJECTED}${frames}GET /z HTTP/1.1\r\nX-Forwarded-For: 9.9.9.9\r\n\r\n`,
  );
  assert.equal(sink.holding, false);
});

test('upgrade declined (426 with a body): what was held is parsed as requests again', () => {
  const { filter: target, sink } = filter();
  client(target, UPGRADE, 'GET /next HTTP/1.1\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n');
  assert.equal(sink.text(), UPGRADE_INJECTED);
  backend(target, 'HTTP/1.1 426 Upgrade Required\r\nContent-Length: 4\r\n\r\n', 'nope');
  assert.equal(target.tunnel, false);
  assert.equal(sink.text(), `${UPGRADE_INJECTED}GET /next HTTP/1.1\r\n${OURS}\r\n`);
});

test('an upgrade after pipelined requests waits for its own answer, not the earlier ones', () => {
  const { filter: target, sink } = filter();
  const plain = 'GET /a HTTP/1.1\r\n\r\n';
  client(target, plain, UPGRADE, 'RAW');
  assert.equal(sink.text(), injected(plain) + UPGRADE_INJECTED);
  // 100-continue and a chunked 200 for /a, then a HEAD-less 204: none is the upgrade's answer.
  backend(
    target,
    'HTTP/1.1 100 Continue\r\n\r\n',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n',
  );
  backend(target, '3\r\nabc\r\n0\r\n\r\n');
  assert.equal(target.holding, true);
  backend(target, SWITCHING);
  assert.equal(sink.text(), `${injected(plain)}${UPGRADE_INJECTED}RAW`);
});

test('HEAD and 204/304 responses have no body: the next response is read as a response', () => {
  const { filter: target, sink } = filter();
  client(target, 'HEAD /a HTTP/1.1\r\n\r\n', 'GET /b HTTP/1.1\r\n\r\n', UPGRADE, 'RAW');
  backend(target, 'HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n');
  backend(target, 'HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n');
  backend(target, SWITCHING);
  assert.equal(target.tunnel, true);
  assert.ok(sink.text().endsWith('RAW'));
});

test('a head over the limit gets 431 and a close, never a pass-through', () => {
  const { filter: target, sink } = filter(64);
  client(target, 'GET / HTTP/1.1\r\nX-Forwarded-For: 6.6.6.6\r\n', `X-Pad: ${'p'.repeat(40)}\r\n`);
  assert.equal(sink.text(), '');
  assert.equal(sink.rejection?.reason, 'request_head_too_large');
  assert.match(
    sink.rejection?.response.toString('latin1') ?? '',
    /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/,
  );
  assert.equal(sink.rejection?.error.code, 'UNHITCH_FORWARDED_REQUEST_TOO_LARGE');
  client(target, '\r\n');
  target.clientEnd();
  assert.equal(sink.text(), '', 'nothing of it, ever');
});

test('the 431 waits for the response the backend owes for an earlier request', () => {
  const { filter: target, sink } = filter(64);
  client(target, 'GET /a HTTP/1.1\r\n\r\n', `GET /b HTTP/1.1\r\nX-Pad: ${'p'.repeat(80)}\r\n\r\n`);
  assert.equal(sink.text(), injected('GET /a HTTP/1.1\r\n\r\n'));
  assert.equal(sink.rejection, undefined, 'not in the middle of the answer to /a');
  backend(target, 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel');
  assert.equal(sink.rejection, undefined);
  backend(target, 'lo');
  assert.equal(rejectionOf(sink)?.reason, 'request_head_too_large');
});

test('what a lenient backend could read differently is refused with 400', () => {
  const cases = [
    'GET / HTTP/1.1\r\nX-Forwarded-For : 6.6.6.6\r\n\r\n', // space before the colon
    'GET / HTTP/1.1\r\nHost: a\r\n X-Forwarded-For: 6.6.6.6\r\n\r\n', // obs-fold
    'GET / HTTP/1.1\r\nno colon here\r\n\r\n',
    'GET / HTTP/1.1\r\nA: b\rX-Forwarded-For: 6.6.6.6\r\n\r\n', // bare CR inside a line
    'POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n',
    'POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n',
    'POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n',
    'POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n',
    'GET  / HTTP/1.1\r\n\r\n',
    'GET / HTTP/2.0\r\n\r\n',
    'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
    '\x16\x03\x01\x00\xa5\x01', // a TLS ClientHello inside TLS
  ];
  for (const request of cases) {
    const { filter: target, sink } = filter();
    client(target, request);
    assert.equal(sink.rejection?.reason, 'request_invalid', JSON.stringify(request));
    assert.match(
      sink.rejection?.response.toString('latin1') ?? '',
      /^HTTP\/1\.1 400 Bad Request\r\n/,
    );
    assert.equal(sink.text(), '', JSON.stringify(request));
  }
  // A bad chunk size mid-body: refused at once (that request will never be answered).
  const { filter: target, sink } = filter();
  client(target, 'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n', 'zz\r\n');
  assert.equal(sink.rejection?.reason, 'request_invalid');
});

test('bare-LF line ends and leading empty lines are understood, so nothing hides behind them', () => {
  const { filter: target, sink } = filter();
  client(target, '\r\n\nGET / HTTP/1.1\nHost: a\nX-Forwarded-For: 6.6.6.6\n\n');
  assert.equal(sink.text(), `GET / HTTP/1.1\nHost: a\n${OURS}\n`);
});

test("the client's FIN after a partial head: the buffered bytes go first, then the FIN", () => {
  const { filter: target, sink } = filter();
  client(target, 'GET /announce HTTP/1.1\r\nHost: tr');
  assert.equal(sink.text(), '');
  target.clientEnd();
  assert.equal(sink.text(), 'GET /announce HTTP/1.1\r\nHost: tr');
  assert.equal(sink.ended, true);
});

test("the client's FIN while an upgrade is pending waits for the answer", () => {
  const { filter: target, sink } = filter();
  client(target, UPGRADE, 'tail');
  target.clientEnd();
  assert.equal(sink.ended, false);
  backend(target, SWITCHING);
  assert.equal(sink.text(), `${UPGRADE_INJECTED}tail`);
  assert.equal(sink.ended, true);
});

test('held bytes past the bound pause the client until the answer', () => {
  const { filter: target, sink } = filter();
  client(target, UPGRADE);
  target.clientData(Buffer.alloc(70_000, 0x41));
  assert.equal(sink.holding, true);
  backend(target, SWITCHING);
  assert.equal(sink.holding, false);
  assert.equal(Buffer.concat(sink.forwarded).length, UPGRADE_INJECTED.length + 70_000);
});

test('a backend whose replies are not HTTP/1.x cannot be followed: the pair is torn down', () => {
  const { filter: target, sink } = filter();
  client(target, UPGRADE);
  backend(target, 'SSH-2.0-OpenSSH\r\n\r\n');
  assert.equal(
    (sink.lostWith as { code?: string } | undefined)?.code,
    'UNHITCH_FORWARDED_RESPONSE_INVALID',
  );
});

test('client address forms', () => {
  for (const [address, header] of [
    ['::ffff:198.51.100.2', '198.51.100.2'],
    ['2001:db8::5', '2001:db8::5'],
  ] as const) {
    const sink = new Recorder();
    new ForwardedFor({ clientAddress: address, sink }).clientData(Buffer.from(UPGRADE));
    assert.match(
      sink.text(),
      new RegExp(`\\r\\nX-Forwarded-For: ${header.replaceAll('.', '\\.')}\\r\\n`),
    );
  }
  assert.throws(
    () => new ForwardedFor({ clientAddress: '1.2.3.4\r\nEvil: 1', sink: new Recorder() }),
    { code: 'UNHITCH_FORWARDED_ADDRESS' },
  );
});

test('a refusal still owed when the backend sends its FIN goes out then, after the last response', () => {
  const { filter: f, sink } = filter();
  client(f, 'GET /a HTTP/1.1\r\nHost: t\r\n\r\n', 'NOT HTTP\r\n\r\n');
  assert.equal(rejectionOf(sink), undefined, 'waits for the response to /a');
  // A response framed by the close: the FIN ends it, then the 400 follows.
  backend(f, 'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npartial body');
  assert.equal(f.backendEnd(), true);
  assert.equal(rejectionOf(sink)?.reason, 'request_invalid');

  const cut = filter();
  client(cut.filter, 'GET /a HTTP/1.1\r\nHost: t\r\n\r\n', 'NOT HTTP\r\n\r\n');
  backend(cut.filter, 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort');
  assert.equal(cut.filter.backendEnd(), false, 'not inside a framed body');
  assert.equal(rejectionOf(cut.sink), undefined);

  const none = filter();
  client(none.filter, 'GET /a HTTP/1.1\r\nHost: t\r\n\r\n');
  assert.equal(none.filter.backendEnd(), false, 'nothing to refuse');
});

test('a head (and a response head) arriving a byte at a time costs linear work', () => {
  // 256 KiB one byte at a time: re-joining the whole head per byte (as before) copied
  // ~32 GB and took most of a minute; appending in place takes well under a second.
  const { filter: target, sink } = filter(256 * 1024);
  const padded = `GET / HTTP/1.1\r\nX-Pad: ${'p'.repeat(250_000)}\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n`;
  const bytes = Buffer.from(padded, 'latin1');
  const started = performance.now();
  for (let at = 0; at < bytes.length; at++) target.clientData(bytes.subarray(at, at + 1));
  assert.equal(sink.rejection, undefined);
  assert.equal(sink.text(), `GET / HTTP/1.1\r\nX-Pad: ${'p'.repeat(250_000)}\r\n${OURS}\r\n`);
  const response = Buffer.from(`HTTP/1.1 204 No Content\r\nX-Pad: ${'p'.repeat(60_000)}\r\n\r\n`);
  for (let at = 0; at < response.length; at++) target.backendData(response.subarray(at, at + 1));
  assert.equal(sink.lostWith, undefined);
  assert.ok(performance.now() - started < 10_000, 'linear in the bytes');
});
