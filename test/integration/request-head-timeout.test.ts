/**
 * request-head-timeout (with forwarded-for): after the handshake a client has that long
 * to deliver a whole request head. One deadline for the whole head, so a head trickled in
 * byte by byte (slowloris after the handshake) is cut at the same time as silence; a
 * later head on a keep-alive connection gets its own deadline from its first byte. The
 * client gets 408 and the connection closes; the log line and the counter name
 * request_head_timeout. Clients come from several loopback addresses.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ConnectionOptions, TLSSocket } from 'node:tls';
import { WebSocket, WebSocketServer } from 'ws';
import { type ConnectionFailureReason, NOOP_OBSERVER } from '../../src/proxy/events.js';
import {
  closeBackend,
  connectClient,
  startBackend,
  startProxy,
  waitFor,
} from '../kit/proxy-fixture.js';

const HEAD_TIMEOUT_MS = 1_000;
/** Bounds every wait here: far above the deadline, so only a missing deadline fails them. */
const WAIT_MS = 10_000;

function countingObserver() {
  const failures: ConnectionFailureReason[] = [];
  return {
    failures,
    observer: {
      ...NOOP_OBSERVER,
      connectionFailed: (reason: ConnectionFailureReason) => failures.push(reason),
    },
  };
}

/** A client from `address` (node's tls.connect takes net's localAddress too). */
function from(address: string): ConnectionOptions {
  return { localAddress: address } as ConnectionOptions;
}

/**
 * What the client read until its socket closed (a write into the closed connection may
 * fail with EPIPE first: that is the close too), or a rejection after WAIT_MS.
 */
function readUntilClosed(client: TLSSocket): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    client.on('data', (chunk: Buffer) => chunks.push(chunk));
    client.on('error', () => {});
    const timer = setTimeout(() => {
      client.destroy();
      reject(new Error(`still open after ${WAIT_MS} ms`));
    }, WAIT_MS);
    // The proxy's FIN ('end': the client is half-open) or a close, whichever comes first.
    const done = (): void => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
      client.destroy();
    };
    client.once('end', done);
    client.once('close', done);
  });
}

/** An HTTP backend that answers each request head after `delayMs` with a small 200. */
async function httpBackend(delayMs = 0) {
  const heads: string[] = [];
  const backend = await startBackend((socket) => {
    let buffered = '';
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('latin1');
      for (;;) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end < 0) return;
        heads.push(buffered.slice(0, end));
        buffered = buffered.slice(end + 4);
        setTimeout(() => {
          if (!socket.destroyed) socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
        }, delayMs);
      }
    });
    socket.on('error', () => {});
  });
  return { ...backend, heads };
}

test('request-head-timeout: silence after the handshake gets 408 and a close, logged and counted', {
  timeout: 30_000,
}, async (t) => {
  const backend = await httpBackend();
  t.after(() => closeBackend(backend));
  const { failures, observer } = countingObserver();
  const proxy = await startProxy(
    backend.port,
    { forwardedFor: true, requestHeadTimeoutMs: HEAD_TIMEOUT_MS },
    undefined,
    observer,
  );
  t.after(() => proxy.close());

  const client = await connectClient(proxy.port, from('127.0.0.2'));
  const started = performance.now();
  const answer = await readUntilClosed(client);
  const livedMs = performance.now() - started;
  assert.match(answer, /^HTTP\/1\.1 408 Request Timeout\r\n/);
  assert.match(answer, /Connection: close/);
  assert.ok(livedMs >= HEAD_TIMEOUT_MS - 50, `closed after ${Math.round(livedMs)} ms`);
  await waitFor(() => failures.includes('request_head_timeout'), WAIT_MS, 'the counter');
  const [line] = proxy.log.withReason('request_head_timeout');
  assert.ok(line, 'a log line with reason request_head_timeout');
  assert.equal(line.level, 30, 'info: a client that sends nothing is no warning');
  assert.match(String(line.client), /^127\.0\.0\.2:/);
  assert.equal((line.err as { code?: string }).code, 'UNHITCH_FORWARDED_REQUEST_TIMEOUT');
  assert.deepEqual(backend.heads, [], 'the backend got no request');
  await waitFor(() => proxy.proxy.activeConnections === 0, WAIT_MS, 'connection gone');
});

test('request-head-timeout: a head trickled in byte by byte is cut at the same deadline', {
  timeout: 30_000,
}, async (t) => {
  const backend = await httpBackend();
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port, {
    forwardedFor: true,
    requestHeadTimeoutMs: HEAD_TIMEOUT_MS,
  });
  t.after(() => proxy.close());

  const client = await connectClient(proxy.port, from('127.0.0.3'));
  const head = Buffer.from(
    'GET /announce HTTP/1.1\r\nHost: tracker.example\r\nX-Pad: aaaaaaaa\r\n\r\n',
  );
  const answer = readUntilClosed(client);
  // One byte every 100 ms: the whole head would take ~6.5 s, each byte well inside any
  // per-byte timeout.
  let sent = 0;
  let stop = false;
  const closed = answer.then(() => {
    stop = true;
  });
  for (; sent < head.length && !stop; sent++) {
    client.write(head.subarray(sent, sent + 1));
    await Promise.race([sleep(100), closed]);
  }
  assert.match(await answer, /^HTTP\/1\.1 408 /);
  assert.ok(sent < head.length, `the whole head (${head.length} bytes) went out before the cut`);
  assert.deepEqual(backend.heads, []);
  await waitFor(
    () => proxy.log.withReason('request_head_timeout').length === 1,
    WAIT_MS,
    'log line',
  );
});

test('request-head-timeout: bounds the head only (a slow answer is fine), and each later head from its first byte', {
  timeout: 30_000,
}, async (t) => {
  // The backend takes longer than the deadline to answer: no business of this timeout.
  const backend = await httpBackend(HEAD_TIMEOUT_MS * 1.5);
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port, {
    forwardedFor: true,
    requestHeadTimeoutMs: HEAD_TIMEOUT_MS,
  });
  t.after(() => proxy.close());

  const client = await connectClient(proxy.port, from('127.0.0.4'));
  const answer = readUntilClosed(client);
  client.write('GET /first HTTP/1.1\r\nHost: t\r\n\r\n');
  await new Promise<void>((resolve) => {
    let seen = '';
    const onData = (chunk: Buffer): void => {
      seen += chunk.toString('latin1');
      if (!seen.includes('\r\n\r\nok')) return;
      client.off('data', onData);
      resolve();
    };
    client.on('data', onData);
  });
  assert.equal(backend.heads.length, 1);
  assert.match(backend.heads[0] ?? '', /X-Forwarded-For: 127\.0\.0\.4/);
  // Quiet between requests for longer than the deadline: no head is under way, nothing
  // is cut (keep-alive idling is idle-timeout's business).
  await sleep(HEAD_TIMEOUT_MS * 1.5);
  assert.ok(!client.destroyed, 'cut while no head was under way');
  // Now a second head starts and stalls: its own deadline cuts it.
  client.write('GET /second HTTP/1.1\r\n');
  assert.match(await answer, /HTTP\/1\.1 408 /);
  assert.equal(backend.heads.length, 1, 'the stalled head never reached the backend');
});

test('request-head-timeout: a WebSocket (the tracker case) is past its head once upgraded: quiet longer than the deadline, it still relays', {
  timeout: 30_000,
}, async (t) => {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(server, 'listening');
  t.after(() => server.close());
  const forwardedFor: string[] = [];
  server.on('connection', (socket, request) => {
    forwardedFor.push(String(request.headers['x-forwarded-for']));
    socket.on('message', (data) => socket.send(data));
  });
  const proxy = await startProxy((server.address() as AddressInfo).port, {
    forwardedFor: true,
    requestHeadTimeoutMs: HEAD_TIMEOUT_MS,
  });
  t.after(() => proxy.close());

  const client = new WebSocket(`wss://localhost:${proxy.port}/announce`, {
    rejectUnauthorized: false,
    localAddress: '127.0.0.7',
  });
  t.after(() => client.terminate());
  await once(client, 'open');
  assert.deepEqual(forwardedFor, ['127.0.0.7']);
  await sleep(HEAD_TIMEOUT_MS * 1.5);
  client.send('announce');
  const [reply] = await once(client, 'message');
  assert.equal(String(reply), 'announce');
  assert.deepEqual(proxy.log.withReason('request_head_timeout'), []);
});
