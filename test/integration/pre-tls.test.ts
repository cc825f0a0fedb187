/**
 * What a peeking frontend (sni-nomatch-abort) does with a ClientHello it will not take:
 * one over the 16 KiB cap is refused with illegal_parameter from its header on, and a
 * client that ignores a fatal alert is not waited for beyond the alert linger.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import { type TestContext, test } from 'node:test';
import { DEFAULT_TLS } from '../../src/config/model.js';
import { ALERT_LINGER_MS } from '../../src/proxy/pre-tls-reader.js';
import {
  CLIENT_HELLO_MAX_HELD_BYTES,
  ILLEGAL_PARAMETER_ALERT,
  UNRECOGNIZED_NAME_ALERT,
} from '../../src/tls/client-hello.js';
import { captureClientHello, inRecords, syntheticClientHello } from '../helpers/client-hello.js';
import {
  closeBackend,
  type RunningProxy,
  startBackend,
  startProxy,
  waitFor,
} from '../kit/proxy-fixture.js';

async function peekingProxy(t: TestContext): Promise<RunningProxy> {
  const backend = await startBackend(() => {});
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port, { tls: { ...DEFAULT_TLS, sniNomatchAbort: true } });
  t.after(() => proxy.close());
  return proxy;
}

/** A plain TCP client that keeps its side open (half-open) and gathers what it reads. */
async function rawClient(port: number): Promise<{ socket: Socket; received: Buffer[] }> {
  const socket = netConnect({ port, host: '127.0.0.1', allowHalfOpen: true });
  socket.on('error', () => {});
  await once(socket, 'connect');
  const received: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => received.push(chunk));
  return { socket, received };
}

/**
 * Sends `bytes` and expects the illegal_parameter alert and a FIN back, and one
 * client_hello_too_large line; returns the line's error.
 */
async function refusedAsTooLarge(
  t: TestContext,
  proxy: RunningProxy,
  bytes: Buffer,
): Promise<{ code?: string; message?: string }> {
  const { socket, received } = await rawClient(proxy.port);
  t.after(() => socket.destroy());
  const ended = once(socket, 'end');
  socket.write(bytes);
  await ended;
  assert.deepEqual(Buffer.concat(received), ILLEGAL_PARAMETER_ALERT);
  await waitFor(
    () => proxy.log.withReason('client_hello_too_large').length === 1,
    5_000,
    'the refusal logged',
  );
  socket.end();
  await waitFor(() => proxy.proxy.activeConnections === 0, 5_000, 'connection released');
  const [line] = proxy.log.withReason('client_hello_too_large');
  return line?.err as { code?: string; message?: string };
}

test('a ClientHello declared at 131,000 bytes in 1-byte records is refused after its first 24 bytes', async (t) => {
  const proxy = await peekingProxy(t);
  // As the issue measured it: about 2.3 MB of heap per such connection before the cap.
  const hello = syntheticClientHello('nobody.example', 65_000, 65_000 - 4);
  // The header (four 1-byte records) and a little more; the proxy needs no more.
  const err = await refusedAsTooLarge(t, proxy, inRecords(hello, 1).subarray(0, 1_000));
  assert.equal(err.code, 'UNHITCH_CLIENT_HELLO_TOO_LARGE');
  assert.match(String(err.message), new RegExp(`declared at ${hello.length} bytes`));
});

test('a ClientHello under the cap cut into 1-byte records is refused once its records pass the cap', async (t) => {
  const proxy = await peekingProxy(t);
  // 16,000 bytes of hello are 96,000 bytes in 1-byte records: more than the peek holds.
  const stream = inRecords(syntheticClientHello('nobody.example', 16_000 - 80), 1);
  const err = await refusedAsTooLarge(
    t,
    proxy,
    stream.subarray(0, CLIENT_HELLO_MAX_HELD_BYTES + 600),
  );
  assert.match(String(err.message), /still incomplete after \d+ bytes/);
});

test('sni-nomatch-abort: a client that ignores the alert is closed when the linger ends', async (t) => {
  const proxy = await peekingProxy(t);
  const hello = await captureClientHello({ servername: 'nobody.example' });
  const { socket, received } = await rawClient(proxy.port);
  t.after(() => socket.destroy());
  const ended = once(socket, 'end');
  socket.write(hello);
  await ended;
  const alertAt = performance.now();
  assert.deepEqual(Buffer.concat(received), UNRECOGNIZED_NAME_ALERT);
  // The client neither closes nor answers: the proxy's socket lingers, then is destroyed.
  assert.equal(proxy.proxy.activeConnections, 1, 'lingering after the alert');
  await waitFor(
    () => proxy.proxy.activeConnections === 0,
    ALERT_LINGER_MS + 10_000,
    'the lingering socket destroyed',
  );
  const lingeredMs = performance.now() - alertAt;
  assert.ok(
    lingeredMs >= ALERT_LINGER_MS - 200,
    `closed after ${lingeredMs} ms, not before the linger`,
  );
  assert.equal(socket.destroyed, false, 'the client never closed');
  // The proxy's side is gone: a byte now meets a reset, which the next write reports.
  const failed = once(socket, 'error');
  for (let attempt = 0; attempt < 50 && !socket.destroyed; attempt++) {
    socket.write('still here');
    await Promise.race([failed, new Promise((resolve) => setTimeout(resolve, 20))]);
  }
  const [error] = (await failed) as [NodeJS.ErrnoException];
  assert.ok(['ECONNRESET', 'EPIPE'].includes(String(error.code)), String(error.code));
  assert.equal(proxy.log.withReason('sni_nomatch').length, 1, 'one line for the refusal');
});
