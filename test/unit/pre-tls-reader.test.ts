/**
 * The pre-TLS reader on its own, over real loopback sockets: its states, what it hands to
 * TLS (every byte, from the first), and each way it gives up.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type AddressInfo, createServer, connect as netConnect, type Socket } from 'node:net';
import { test } from 'node:test';
import type { ConnectionFailureReason } from '../../src/proxy/events.js';
import {
  type PreTlsHandlers,
  type PreTlsOptions,
  PreTlsReader,
  type TlsTarget,
} from '../../src/proxy/pre-tls-reader.js';
import type { ProxyEndpoints } from '../../src/proxy/proxy-protocol.js';
import { ILLEGAL_PARAMETER_ALERT, UNRECOGNIZED_NAME_ALERT } from '../../src/tls/client-hello.js';
import { inRecords, syntheticClientHello } from '../helpers/client-hello.js';

type Event =
  | { readonly kind: 'header'; readonly endpoints: ProxyEndpoints | undefined }
  | { readonly kind: 'handOver'; readonly target: TlsTarget }
  | { readonly kind: 'failed'; readonly reason: ConnectionFailureReason; readonly settled: boolean }
  | { readonly kind: 'closed' }
  | { readonly kind: 'outOfBudget' };

/** Handlers that record what they are told; `next()` resolves with the next event not yet awaited. */
function recorder(): PreTlsHandlers & { events: Event[]; next(): Promise<Event> } {
  const events: Event[] = [];
  const waiting: Array<(event: Event) => void> = [];
  let awaited = 0;
  const push = (event: Event): void => {
    events.push(event);
    waiting.shift()?.(event);
  };
  return {
    events,
    next: () => {
      const index = awaited++;
      const event = events[index];
      if (event !== undefined) return Promise.resolve(event);
      return new Promise((resolve) => waiting.push(resolve));
    },
    proxyHeaderRead: (_raw, endpoints) => {
      push({ kind: 'header', endpoints });
      return true;
    },
    handOver: (_raw, target) => push({ kind: 'handOver', target }),
    failed: (_raw, reason, _error, settled) => push({ kind: 'failed', reason, settled }),
    closed: () => push({ kind: 'closed' }),
    outOfBudget: () => push({ kind: 'outOfBudget' }),
  };
}

/** A connected loopback pair: `client` writes, `server` is what the reader reads. */
async function socketPair(): Promise<{ client: Socket; server: Socket; close(): void }> {
  const listener = createServer({ allowHalfOpen: false });
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  const accepted = once(listener, 'connection');
  const client = netConnect({
    port: (listener.address() as AddressInfo).port,
    host: '127.0.0.1',
    allowHalfOpen: true,
  });
  client.on('error', () => {});
  const [server] = (await accepted) as [Socket];
  server.on('error', () => {});
  return {
    client,
    server,
    close: () => {
      client.destroy();
      server.destroy();
      listener.close();
    },
  };
}

const ROUTE_BY_NAME = (servername: string | undefined): number | undefined =>
  servername === 'two.example' ? 1 : servername === 'one.example' ? 0 : undefined;

function options(overrides: Partial<PreTlsOptions> = {}): PreTlsOptions {
  return {
    proxyHeader: false,
    route: ROUTE_BY_NAME,
    acmeChallenges: undefined,
    handshakeTimeoutMs: 10_000,
    ...overrides,
  };
}

/** Writes `bytes` in pieces of `size`, each its own write. */
function writeInPieces(socket: Socket, bytes: Buffer, size: number): void {
  for (let at = 0; at < bytes.length; at += size) socket.write(bytes.subarray(at, at + size));
}

test('PROXY header → ClientHello → TLS: fed a byte at a time, every byte is handed back', async (t) => {
  const { client, server, close } = await socketPair();
  t.after(close);
  const handlers = recorder();
  const reader = new PreTlsReader(server, options({ proxyHeader: true }), handlers);
  assert.equal(reader.state, 'proxy-header');
  const header = Buffer.from('PROXY TCP4 192.0.2.7 127.0.0.1 40000 443\r\n');
  const hello = inRecords(syntheticClientHello('two.example', 200), 9);
  const headerRead = handlers.next();
  const handedOver = handlers.next();
  client.setNoDelay(true);
  writeInPieces(client, Buffer.concat([header, hello]), 1);
  await headerRead;
  await handedOver;
  assert.equal(reader.state, 'tls');
  assert.deepEqual(handlers.events, [
    {
      kind: 'header',
      endpoints: {
        sourceAddress: '192.0.2.7',
        sourcePort: 40000,
        destinationAddress: '127.0.0.1',
        destinationPort: 443,
      },
    },
    { kind: 'handOver', target: 1 },
  ]);
  // What TLS reads from the socket: the ClientHello from its first byte.
  const read: Buffer[] = [];
  let length = 0;
  server.on('data', (chunk: Buffer) => {
    read.push(chunk);
    length += chunk.length;
  });
  server.resume();
  for (let turn = 0; turn < 100 && length < hello.length; turn++)
    await new Promise((resolve) => setTimeout(resolve, 10));
  assert.deepEqual(Buffer.concat(read), hello);
  assert.equal(reader.handshakeEnded(), false, 'the budget had not run out');
});

test('sni-nomatch: refused with unrecognized_name, settled by the close, not at once', async (t) => {
  const { client, server, close } = await socketPair();
  t.after(close);
  const handlers = recorder();
  const reader = new PreTlsReader(server, options(), handlers);
  assert.equal(reader.state, 'client-hello');
  const received: Buffer[] = [];
  client.on('data', (chunk: Buffer) => received.push(chunk));
  const ended = once(client, 'end');
  client.write(inRecords(syntheticClientHello('nobody.example', 10), 16_384));
  await ended;
  assert.deepEqual(Buffer.concat(received), UNRECOGNIZED_NAME_ALERT);
  assert.equal(reader.state, 'refused');
  assert.deepEqual(handlers.events, [{ kind: 'failed', reason: 'sni_nomatch', settled: false }]);
});

test('a ClientHello over the cap: illegal_parameter, client_hello_too_large', async (t) => {
  const { client, server, close } = await socketPair();
  t.after(close);
  const handlers = recorder();
  new PreTlsReader(server, options(), handlers);
  const received: Buffer[] = [];
  client.on('data', (chunk: Buffer) => received.push(chunk));
  const ended = once(client, 'end');
  client.write(inRecords(syntheticClientHello('two.example', 20_000), 16_384));
  await ended;
  assert.deepEqual(Buffer.concat(received), ILLEGAL_PARAMETER_ALERT);
  assert.deepEqual(handlers.events, [
    { kind: 'failed', reason: 'client_hello_too_large', settled: false },
  ]);
});

test('not a ClientHello (plain HTTP): handed to the default server for OpenSSL to judge', async (t) => {
  const { client, server, close } = await socketPair();
  t.after(close);
  const handlers = recorder();
  new PreTlsReader(server, options(), handlers);
  const handedOver = handlers.next();
  client.write('GET / HTTP/1.1\r\n\r\n');
  assert.deepEqual(await handedOver, { kind: 'handOver', target: 0 });
});

test('the budget: a silent client in each state, and a handshake that outlives it', async (t) => {
  for (const [proxyHeader, reason] of [
    [true, 'proxy_header_timeout'],
    [false, 'handshake_timeout'],
  ] as const) {
    const { server, close } = await socketPair();
    t.after(close);
    const handlers = recorder();
    const reader = new PreTlsReader(
      server,
      options({ proxyHeader, handshakeTimeoutMs: 50 }),
      handlers,
    );
    assert.deepEqual(await handlers.next(), { kind: 'failed', reason, settled: true });
    assert.equal(reader.state, 'done');
  }
  // Handed to TLS, then silent: the same budget, counted from accept, ends the handshake.
  const { client, server, close } = await socketPair();
  t.after(close);
  const handlers = recorder();
  const reader = new PreTlsReader(server, options({ handshakeTimeoutMs: 200 }), handlers);
  client.write(inRecords(syntheticClientHello('one.example', 10), 16_384));
  assert.deepEqual(await handlers.next(), { kind: 'handOver', target: 0 });
  assert.deepEqual(await handlers.next(), { kind: 'outOfBudget' });
  assert.equal(reader.handshakeEnded(), true, 'reported: nothing more to say');
});

test('a FIN or a reset mid-header, a FIN mid-hello, and a close from our side', async (t) => {
  const cases: Array<[boolean, (client: Socket, server: Socket) => void, Event]> = [
    [
      true,
      (client) => client.end('PROXY TCP4'),
      { kind: 'failed', reason: 'proxy_header_incomplete', settled: true },
    ],
    [
      true,
      (client) => client.write('PROXY', () => client.resetAndDestroy()),
      { kind: 'failed', reason: 'proxy_header_incomplete', settled: true },
    ],
    [
      false,
      (client) => client.end(Buffer.from([0x16, 3, 1, 0, 200, 1])),
      { kind: 'failed', reason: 'client_reset', settled: true },
    ],
    [false, (_client, server) => server.destroy(), { kind: 'closed' }],
  ];
  for (const [proxyHeader, act, expected] of cases) {
    const { client, server, close } = await socketPair();
    t.after(close);
    const handlers = recorder();
    new PreTlsReader(server, options({ proxyHeader }), handlers);
    const event = handlers.next();
    act(client, server);
    assert.deepEqual(await event, expected);
  }
});
