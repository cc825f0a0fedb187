import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type AddressInfo, createServer } from 'node:net';
import { test } from 'node:test';
import { connect } from 'node:tls';
import {
  CLIENT_HELLO_MAX_BYTES,
  CLIENT_HELLO_MAX_HELD_BYTES,
  type ClientHelloPeek,
  ClientHelloReader,
  peekClientHello,
} from '../../src/tls/client-hello.js';
import { inRecords, syntheticClientHello } from '../helpers/client-hello.js';

/** The first flight of a real node:tls client (one record holding the ClientHello). */
async function captureClientHello(
  servername: string | undefined,
  ALPNProtocols?: string[],
): Promise<Buffer> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const accepted = once(server, 'connection');
  const client = connect({
    host: '127.0.0.1',
    port,
    rejectUnauthorized: false,
    ...(servername === undefined ? {} : { servername }),
    ...(ALPNProtocols === undefined ? {} : { ALPNProtocols }),
  });
  client.on('error', () => {});
  const [socket] = (await accepted) as [import('node:net').Socket];
  const [chunk] = (await once(socket, 'data')) as [Buffer];
  client.destroy();
  socket.destroy();
  server.close();
  return chunk;
}

/** The same handshake message cut into records of at most `size` payload bytes. */
function refragment(record: Buffer, size: number): Buffer {
  return inRecords(record.subarray(5), size);
}

test('SNI from a real ClientHello; every shorter prefix asks for more bytes', async () => {
  const hello = await captureClientHello('site1.example.com');
  assert.deepEqual(peekClientHello(hello), {
    kind: 'client-hello',
    servername: 'site1.example.com',
    alpn: [],
  });
  for (let length = 0; length < hello.length; length++) {
    assert.equal(peekClientHello(hello.subarray(0, length)).kind, 'incomplete', `${length} bytes`);
  }
  // Bytes after the ClientHello (the client's next records) change nothing.
  assert.deepEqual(peekClientHello(Buffer.concat([hello, Buffer.from([0x14, 3, 3, 0, 1, 1])])), {
    kind: 'client-hello',
    servername: 'site1.example.com',
    alpn: [],
  });
});

test('a ClientHello split over several records is joined', async () => {
  const hello = await captureClientHello('split.example.com');
  for (const size of [1, 7, 100]) {
    const fragmented = refragment(hello, size);
    assert.deepEqual(peekClientHello(fragmented), {
      kind: 'client-hello',
      servername: 'split.example.com',
      alpn: [],
    });
    assert.equal(peekClientHello(fragmented.subarray(0, fragmented.length - 1)).kind, 'incomplete');
  }
});

test('no SNI (an IP address as host) is a ClientHello without a name', async () => {
  const hello = await captureClientHello(undefined);
  assert.deepEqual(peekClientHello(hello), {
    kind: 'client-hello',
    servername: undefined,
    alpn: [],
  });
});

test('the ALPN list is read (ACME tls-alpn-01 offers acme-tls/1), whatever the extension order', async () => {
  const hello = await captureClientHello('a.example', ['acme-tls/1', 'http/1.1']);
  assert.deepEqual(peekClientHello(hello), {
    kind: 'client-hello',
    servername: 'a.example',
    alpn: ['acme-tls/1', 'http/1.1'],
  });
  assert.deepEqual(peekClientHello(refragment(hello, 13)), peekClientHello(hello));
});

test('plaintext HTTP, SSLv2-style hellos, alerts and corrupt lengths are not ClientHellos', async () => {
  assert.equal(peekClientHello(Buffer.from('GET / HTTP/1.1\r\n')).kind, 'not-client-hello');
  assert.equal(peekClientHello(Buffer.from([0x80, 0x2e, 0x01, 0x03])).kind, 'not-client-hello');
  assert.equal(peekClientHello(Buffer.from([0x15, 3, 3, 0, 2, 2, 40])).kind, 'not-client-hello');
  // A handshake record that is not a ClientHello (ServerHello, type 2).
  assert.equal(
    peekClientHello(Buffer.from([0x16, 3, 3, 0, 4, 2, 0, 0, 0])).kind,
    'not-client-hello',
  );
  // A zero-length record, and one longer than TLS allows.
  assert.equal(peekClientHello(Buffer.from([0x16, 3, 1, 0, 0])).kind, 'not-client-hello');
  assert.equal(peekClientHello(Buffer.from([0x16, 3, 1, 0x48, 1])).kind, 'not-client-hello');
  // A complete ClientHello whose inner lengths run past its end.
  const hello = await captureClientHello('x.example.com');
  const corrupt = Buffer.from(hello);
  corrupt[5 + 4 + 34] = 0xff; // legacy_session_id length
  assert.equal(peekClientHello(corrupt).kind, 'not-client-hello');
});

test('a ClientHello up to 16 KiB is read in any records; a larger one is refused from its header on', () => {
  // The largest accepted: 16,384 bytes of message, in one record and in 100-byte records.
  const overhead = syntheticClientHello('big.example', 0).length;
  const largest = syntheticClientHello('big.example', CLIENT_HELLO_MAX_BYTES - overhead);
  assert.equal(largest.length, CLIENT_HELLO_MAX_BYTES);
  for (const size of [16_384, 100]) {
    assert.deepEqual(peekClientHello(inRecords(largest, size)), {
      kind: 'client-hello',
      servername: 'big.example',
      alpn: [],
    });
  }
  // One byte more is refused once the 4-byte handshake header is in: nothing of it is waited for.
  const over = inRecords(
    syntheticClientHello('big.example', CLIENT_HELLO_MAX_BYTES - overhead + 1),
    1,
  );
  const reader = new ClientHelloReader();
  let result: ClientHelloPeek = { kind: 'incomplete' };
  let fed = 0;
  while (result.kind === 'incomplete' && fed < over.length) {
    result = reader.push(over.subarray(fed, fed + 1));
    fed += 1;
  }
  assert.deepEqual(result, { kind: 'too-large', declaredBytes: CLIENT_HELLO_MAX_BYTES + 1 });
  assert.equal(fed, 4 * 6, 'refused after four 1-byte records');
  // Near OpenSSL's own bound (131,396 bytes), which alone would take it: refused just the same.
  const huge = syntheticClientHello('big.example', 65_000, 65_000);
  assert.deepEqual(peekClientHello(inRecords(huge, 16_384)), {
    kind: 'too-large',
    declaredBytes: huge.length,
  });
});

test('the peek holds at most the bytes received, up to its cap: tiny records past it are refused', () => {
  // 10,000 bytes of hello in 1-byte records is 60,000 bytes on the wire.
  const stream = inRecords(syntheticClientHello('slow.example', 10_000), 1);
  const reader = new ClientHelloReader();
  let result: ClientHelloPeek = { kind: 'incomplete' };
  let fed = 0;
  while (result.kind === 'incomplete' && fed < stream.length) {
    const chunk = stream.subarray(fed, fed + 7);
    result = reader.push(chunk);
    fed += chunk.length;
    assert.equal(reader.received().length, fed, 'exactly the bytes received');
    assert.ok(reader.received().equals(stream.subarray(0, fed)));
  }
  assert.deepEqual(result, { kind: 'too-large', declaredBytes: undefined });
  assert.ok(fed > CLIENT_HELLO_MAX_HELD_BYTES && fed <= CLIENT_HELLO_MAX_HELD_BYTES + 7, `${fed}`);
});

test('the bytes after a complete ClientHello stay with it, for OpenSSL', () => {
  const hello = inRecords(syntheticClientHello('after.example', 300), 50);
  const after = Buffer.from('bytes after the hello');
  const reader = new ClientHelloReader();
  assert.equal(reader.push(hello.subarray(0, 100)).kind, 'incomplete');
  assert.equal(reader.push(Buffer.concat([hello.subarray(100), after])).kind, 'client-hello');
  assert.ok(reader.received().equals(Buffer.concat([hello, after])));
});

test('fed in any cuts, the reader says what one look at the whole says', () => {
  const stream = Buffer.concat([
    inRecords(syntheticClientHello('cut.example', 300), 7),
    Buffer.from('application data after the hello'),
  ]);
  const whole = peekClientHello(stream);
  assert.equal(whole.kind, 'client-hello');
  for (const size of [1, 2, 3, 5, 6, 64]) {
    const reader = new ClientHelloReader();
    let result: ClientHelloPeek = { kind: 'incomplete' };
    for (let at = 0; at < stream.length && result.kind === 'incomplete'; at += size) {
      result = reader.push(stream.subarray(at, at + size));
    }
    assert.deepEqual(result, whole, `cuts of ${size}`);
  }
});

test('a ClientHello in 1-byte records, fed byte by byte, costs linear work', () => {
  // 15 KiB of 1-byte records, 2,500 of them: joining every record again on each byte
  // took seconds; once each, milliseconds. The bound is far from both.
  const stream = inRecords(syntheticClientHello('slow.example', 2_400), 1);
  assert.ok(stream.length < CLIENT_HELLO_MAX_HELD_BYTES);
  const reader = new ClientHelloReader();
  const started = performance.now();
  let result: ClientHelloPeek = { kind: 'incomplete' };
  for (let at = 0; at < stream.length; at++) result = reader.push(stream.subarray(at, at + 1));
  assert.equal(result.kind, 'client-hello');
  assert.ok(performance.now() - started < 5_000, 'linear in the bytes');
});
