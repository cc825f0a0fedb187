import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ForwardedHeaderInjector } from '../../src/proxy/forwarded.js';

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

function injector(maxHeaderBytes?: number): ForwardedHeaderInjector {
  return new ForwardedHeaderInjector(
    maxHeaderBytes === undefined
      ? { clientAddress: '203.0.113.7' }
      : { clientAddress: '203.0.113.7', maxHeaderBytes },
  );
}

function feed(target: ForwardedHeaderInjector, chunks: readonly (string | Buffer)[]): Buffer {
  return Buffer.concat(
    chunks.map((c) => target.push(typeof c === 'string' ? Buffer.from(c, 'latin1') : c)),
  );
}

function bytesOf(text: string): Buffer {
  return Buffer.from(text, 'latin1');
}

test('injects both headers just before the empty line of the first request', () => {
  const target = injector();
  assert.equal(target.done, false);
  const out = target.push(bytesOf(UPGRADE));
  assert.equal(out.toString('latin1'), UPGRADE_INJECTED);
  assert.equal(target.done, true);
  assert.equal(target.outcome, 'injected');
});

test('removes client-supplied X-Forwarded-For / -Proto / Forwarded in any case', () => {
  const request =
    'GET /announce HTTP/1.1\r\n' +
    'x-forwarded-for: 6.6.6.6\r\n' +
    'Host: tracker.example\r\n' +
    'X-FORWARDED-PROTO: http\r\n' +
    'Forwarded: for=6.6.6.6;proto=http\r\n' +
    'X-Forwarded-For : 7.7.7.7\r\n' +
    'X-Forwarded-For: 8.8.8.8,\r\n' +
    '  9.9.9.9\r\n' +
    'X-Forwarded-Host: kept.example\r\n' +
    'X-Real-IP: 5.5.5.5\r\n' +
    '\r\n';
  const expected =
    'GET /announce HTTP/1.1\r\n' +
    'Host: tracker.example\r\n' +
    'X-Forwarded-Host: kept.example\r\n' +
    'X-Real-IP: 5.5.5.5\r\n' +
    `${OURS}\r\n`;
  assert.equal(injector().push(bytesOf(request)).toString('latin1'), expected);
});

test('header split byte by byte, including the final CRLFCRLF', () => {
  const target = injector();
  const input = bytesOf(UPGRADE);
  const outputs: Buffer[] = [];
  for (let i = 0; i < input.length; i++) {
    const out = target.push(input.subarray(i, i + 1));
    if (i < input.length - 1) {
      assert.equal(out.length, 0, `nothing forwarded before the header ends (byte ${i})`);
      assert.equal(target.done, false);
    }
    outputs.push(out);
  }
  assert.equal(Buffer.concat(outputs).toString('latin1'), UPGRADE_INJECTED);
  assert.equal(target.done, true);
});

test('CRLFCRLF split in the middle across two chunks', () => {
  const cut = UPGRADE.length - 3; // "...13\r" | "\n\r\n"
  const target = injector();
  assert.equal(target.push(bytesOf(UPGRADE.slice(0, cut))).length, 0);
  assert.equal(target.push(bytesOf(UPGRADE.slice(cut))).toString('latin1'), UPGRADE_INJECTED);
});

test('request body and later requests pass through unchanged', () => {
  const body = Buffer.from([0x00, 0xff, 0x0d, 0x0a, 0x0d, 0x0a, 0x81, 0x85]);
  const post =
    'POST /x HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\nContent-Length: 16\r\n\r\n';
  const target = injector();
  const first = target.push(Buffer.concat([bytesOf(post), body]));
  const expectedHeader = `POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 16\r\n${OURS}\r\n`;
  assert.deepEqual(first, Buffer.concat([bytesOf(expectedHeader), body]));
  // After done, bytes (even another request with its own XFF) are returned untouched.
  const later = bytesOf('GET / HTTP/1.1\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n');
  assert.equal(target.push(body), body);
  assert.equal(target.push(later), later);
});

test('non-HTTP first bytes: passed through at once, unchanged', () => {
  const clientHello = Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01]);
  const tlsTarget = injector();
  assert.deepEqual(tlsTarget.push(clientHello), clientHello);
  assert.equal(tlsTarget.done, true);
  assert.equal(tlsTarget.outcome, 'passthrough-not-http');

  // HTTP/2 prior-knowledge preface: request-line shaped, but not HTTP/1.x.
  const preface = bytesOf('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
  const h2 = injector();
  assert.deepEqual(h2.push(preface), preface);
  assert.equal(h2.outcome, 'passthrough-not-http');

  // Buffered bytes come back too when the request line turns out to be junk.
  const junk = injector();
  assert.equal(junk.push(bytesOf('GET /a')).length, 0);
  assert.equal(
    junk.push(bytesOf(' b c\r\nHost: x\r\n')).toString('latin1'),
    'GET /a b c\r\nHost: x\r\n',
  );
  assert.equal(junk.outcome, 'passthrough-not-http');

  // A method that never ends (no space within 32 token bytes).
  const longMethod = injector();
  const method = bytesOf('A'.repeat(40));
  assert.deepEqual(longMethod.push(method), method);
  assert.equal(longMethod.done, true);
});

test('header larger than maxHeaderBytes: everything buffered goes out unchanged', () => {
  const target = injector(64);
  const head = bytesOf('GET / HTTP/1.1\r\nX-Forwarded-For: 6.6.6.6\r\n');
  assert.equal(target.push(head).length, 0);
  const more = bytesOf(`X-Pad: ${'p'.repeat(40)}\r\n`);
  const out = target.push(more);
  assert.deepEqual(out, Buffer.concat([head, more]));
  assert.equal(target.outcome, 'passthrough-too-large');
  const rest = bytesOf('\r\n');
  assert.equal(target.push(rest), rest);

  // Complete in one chunk but still too large.
  const whole = injector(32);
  const request = bytesOf(UPGRADE);
  assert.deepEqual(whole.push(request), request);
  assert.equal(whole.outcome, 'passthrough-too-large');
});

test('bare-LF line ends are understood, so a spoofed header cannot hide behind them', () => {
  const request = 'GET / HTTP/1.1\nHost: a\nX-Forwarded-For: 6.6.6.6\n\nBODY';
  const out = injector().push(bytesOf(request)).toString('latin1');
  assert.equal(out, `GET / HTTP/1.1\nHost: a\n${OURS}\nBODY`);
});

test('client address forms', () => {
  const mapped = new ForwardedHeaderInjector({ clientAddress: '::ffff:198.51.100.2' });
  assert.match(
    mapped.push(bytesOf(UPGRADE)).toString('latin1'),
    /\r\nX-Forwarded-For: 198\.51\.100\.2\r\n/,
  );
  const v6 = new ForwardedHeaderInjector({ clientAddress: '2001:db8::5' });
  assert.match(
    v6.push(bytesOf(UPGRADE)).toString('latin1'),
    /\r\nX-Forwarded-For: 2001:db8::5\r\n/,
  );
  assert.throws(() => new ForwardedHeaderInjector({ clientAddress: '1.2.3.4\r\nEvil: 1' }), {
    code: 'UNHITCH_FORWARDED_ADDRESS',
  });
});

test('an empty chunk while buffering forwards nothing', () => {
  const target = injector();
  assert.equal(target.push(Buffer.alloc(0)).length, 0);
  assert.equal(target.done, false);
  assert.equal(target.push(bytesOf(UPGRADE)).toString('latin1'), UPGRADE_INJECTED);
});

test('every two-way split of header + body gives the same bytes', () => {
  const request = `POST /a HTTP/1.1\r\nX-Forwarded-Proto: http\r\nContent-Length: 4\r\n\r\nBODY`;
  const expected = `POST /a HTTP/1.1\r\nContent-Length: 4\r\n${OURS}\r\nBODY`;
  for (let cut = 0; cut <= request.length; cut++) {
    const out = feed(injector(), [request.slice(0, cut), request.slice(cut)]);
    assert.equal(out.toString('latin1'), expected, `cut at ${cut}`);
  }
});
