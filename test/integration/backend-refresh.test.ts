/**
 * backend-refresh: a backend given by name is resolved at start and every N seconds; new
 * connections follow the new address, open ones stay. The name is one the test controls:
 * the proxy's lookup (getaddrinfo in production) is handed a table the test rewrites,
 * and the two backends are real listeners on 127.0.0.1 and 127.0.0.2, same port.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { test } from 'node:test';
import { DEFAULT_CONFIG, type ProxyConfig } from '../../src/config/model.js';
import { TlsProxy } from '../../src/proxy/proxy.js';
import { localhostCertificate } from '../kit/pki.js';
import { CapturedLog, connectClient, frontendOn, waitFor } from '../kit/proxy-fixture.js';

/** An echo backend on `host` that tags every reply with its own address. */
async function taggedEcho(host: string, port: number): Promise<Server> {
  const server = createServer((socket: Socket) => {
    socket.on('data', (chunk: Buffer) => socket.write(`${host}:${chunk}`));
    socket.on('error', () => {});
  });
  server.listen(port, host);
  await once(server, 'listening');
  return server;
}

async function roundTrip(socket: import('node:tls').TLSSocket, text: string): Promise<string> {
  socket.write(text);
  const [reply] = (await once(socket, 'data')) as [Buffer];
  return reply.toString();
}

test('backend-refresh: new connections follow the new address, open ones stay; lookup failures keep the old one', async (t) => {
  const first = await taggedEcho('127.0.0.1', 0);
  t.after(() => first.close());
  const port = (first.address() as AddressInfo).port;
  const second = await taggedEcho('127.0.0.2', port);
  t.after(() => second.close());

  const table = new Map<string, string>([['backend.unhitch.test', '127.0.0.1']]);
  let lookups = 0;
  const log = new CapturedLog();
  const config: ProxyConfig = {
    ...DEFAULT_CONFIG,
    source: '<test>',
    frontends: [frontendOn()],
    backend: { kind: 'tcp', host: 'backend.unhitch.test', port },
    backendRefreshSec: 1,
  };
  const proxy = await TlsProxy.start({
    config,
    certificates: [localhostCertificate().material],
    logger: log.logger,
    backendLookup: async (host) => {
      lookups += 1;
      const address = table.get(host);
      if (address === undefined)
        throw Object.assign(new Error(`${host} not found`), { code: 'ENOTFOUND' });
      return address;
    },
  });
  t.after(() => proxy.destroy());
  const proxyPort = proxy.addresses()[0]?.port ?? 0;
  const resolvedTo = (address: string) =>
    log.lines.filter((line) => line.msg === 'backend address' && line.address === address).length;

  const before = await connectClient(proxyPort);
  t.after(() => before.destroy());
  assert.equal(await roundTrip(before, 'one'), '127.0.0.1:one');

  table.set('backend.unhitch.test', '127.0.0.2');
  await waitFor(() => resolvedTo('127.0.0.2') === 1, 5_000, 'the refresh to 127.0.0.2');
  const after = await connectClient(proxyPort);
  t.after(() => after.destroy());
  assert.equal(await roundTrip(after, 'two'), '127.0.0.2:two', 'a new connection follows');
  assert.equal(await roundTrip(before, 'three'), '127.0.0.1:three', 'the open one stays');

  table.delete('backend.unhitch.test');
  const failuresBefore = lookups;
  await waitFor(
    () => log.lines.some((line) => line.msg?.startsWith('backend lookup failed') === true),
    5_000,
    'a failed lookup',
  );
  assert.ok(lookups > failuresBefore);
  const meanwhile = await connectClient(proxyPort);
  t.after(() => meanwhile.destroy());
  assert.equal(await roundTrip(meanwhile, 'four'), '127.0.0.2:four', 'the last address stays');
});

test('backend-refresh = 0: the name is looked up once, at start, not per connection', async (t) => {
  const backend = await taggedEcho('127.0.0.1', 0);
  t.after(() => backend.close());
  const port = (backend.address() as AddressInfo).port;
  let lookups = 0;
  const proxy = await TlsProxy.start({
    config: {
      ...DEFAULT_CONFIG,
      source: '<test>',
      frontends: [frontendOn()],
      backend: { kind: 'tcp', host: 'once.unhitch.test', port },
    },
    certificates: [localhostCertificate().material],
    logger: new CapturedLog().logger,
    backendLookup: async () => {
      lookups += 1;
      return '127.0.0.1';
    },
  });
  t.after(() => proxy.destroy());
  const proxyPort = proxy.addresses()[0]?.port ?? 0;
  for (const text of ['a', 'b', 'c']) {
    const client = await connectClient(proxyPort);
    assert.equal(await roundTrip(client, text), `127.0.0.1:${text}`);
    client.destroy();
  }
  assert.equal(lookups, 1);
});
