import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, connect as netConnect, type Socket } from 'node:net';
import { test } from 'node:test';
import { SocketEndpoints } from '../../src/proxy/socket-endpoints.js';

/** An accepted loopback socket and the client's end of it. */
async function acceptedPair(): Promise<{ accepted: Socket; client: Socket; close: () => void }> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  const client = netConnect(port, '127.0.0.1');
  client.on('error', () => {});
  const [accepted] = (await once(server, 'connection')) as [Socket];
  accepted.on('error', () => {});
  await once(client, 'connect');
  return {
    accepted,
    client,
    close: () => {
      client.destroy();
      accepted.destroy();
      server.close();
    },
  };
}

test('socket endpoints: read when asked for, from the live socket', async (t) => {
  const pair = await acceptedPair();
  t.after(pair.close);
  const endpoints = new SocketEndpoints(pair.accepted, false);
  assert.equal(endpoints.sourceAddress, '127.0.0.1');
  assert.equal(endpoints.sourcePort, pair.client.localPort);
  assert.equal(endpoints.destinationAddress, '127.0.0.1');
  assert.equal(endpoints.destinationPort, pair.client.remotePort);
});

/** Resets the client's end and waits until node has closed the accepted socket. */
async function resetAndWait(pair: { accepted: Socket; client: Socket }): Promise<void> {
  // Not once(): it rejects on the 'error' (ECONNRESET) that comes first.
  const closed = new Promise((resolve) => pair.accepted.once('close', resolve));
  pair.client.resetAndDestroy();
  await closed;
}

test('socket endpoints: the client address read at accept is still known once node has closed the socket (a reset); read lazily it is gone', async (t) => {
  // Two connections: node keeps a read address on the socket, which would serve both.
  const early = await acceptedPair();
  t.after(early.close);
  const late = await acceptedPair();
  t.after(late.close);
  const clientPort = early.client.localPort;
  const atAccept = new SocketEndpoints(early.accepted, true);
  const lazy = new SocketEndpoints(late.accepted, false);
  await resetAndWait(early);
  await resetAndWait(late);
  assert.equal(atAccept.sourceAddress, '127.0.0.1');
  assert.equal(atAccept.sourcePort, clientPort);
  // Why a frontend whose failure lines name the client reads the address at accept.
  assert.equal(lazy.sourceAddress, '');
});
