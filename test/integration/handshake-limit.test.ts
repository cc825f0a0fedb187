/**
 * max-handshakes, on the real binary (a worker's pause relies on the primary holding its
 * listening socket): a flood of idle pre-handshake sockets and stalled ClientHellos from
 * other addresses fills the worker's handshake budget; the worker stops accepting (no
 * more than the limit are taken), its established connections keep relaying, and a
 * client arriving meanwhile waits in the backlog and is served once the flood goes,
 * never refused. The pause is logged with its code and counted.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import { test } from 'node:test';
import type { ConnectionOptions, TLSSocket } from 'node:tls';
import { captureClientHello } from '../helpers/client-hello.js';
import { makeCertificate } from '../kit/pki.js';
import { freePort } from '../kit/ports.js';
import { closeBackend, connectClient, startBackend } from '../kit/proxy-fixture.js';
import { scrapeMetrics } from '../kit/scrape.js';
import { startUnhitch } from '../kit/unhitch-process.js';

const cert = makeCertificate('handshake-limit', ['localhost']);
const MAX_HANDSHAKES = 8;
const IDLE_FLOOD = 40;
const HELLO_FLOOD = 20;

function from(address: string): ConnectionOptions {
  return { localAddress: address } as ConnectionOptions;
}

async function echo(client: TLSSocket, text: string): Promise<void> {
  let seen = '';
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      seen += chunk.toString('latin1');
      if (seen.length < text.length) return;
      client.off('data', onData);
      client.off('close', onClose);
      resolve();
    };
    const onClose = (): void => reject(new Error('closed during an echo'));
    client.on('data', onData);
    client.once('close', onClose);
    client.write(text);
  });
  assert.equal(seen, text);
}

/** A TCP connection from `localAddress` that is in the listen queue (or accepted). */
async function rawFrom(port: number, localAddress: string): Promise<Socket> {
  const socket = netConnect({ port, host: '127.0.0.1', localAddress });
  socket.on('error', () => {});
  await once(socket, 'connect');
  return socket;
}

test('max-handshakes: a pre-handshake flood pauses accepting; established connections keep relaying; a newcomer waits, then is served', {
  timeout: 90_000,
}, async (t) => {
  const backend = await startBackend((socket) => {
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => socket.write(chunk));
  });
  t.after(() => closeBackend(backend));
  const port = await freePort();
  const metricsPort = await freePort();
  const unhitch = startUnhitch([
    `--frontend=[127.0.0.1]:${port}`,
    `--backend=[127.0.0.1]:${backend.port}`,
    '--workers=1',
    `--metrics=127.0.0.1:${metricsPort}`,
    `--max-handshakes=${MAX_HANDSHAKES}`,
    cert.combinedPath,
  ]);
  t.after(() => unhitch.kill('SIGKILL'));
  await unhitch.waitForLog((line) => line.msg === 'worker ready');
  const series = async (name: string): Promise<number | undefined> =>
    (await scrapeMetrics(metricsPort)).get(name);

  const established = await Promise.all(
    ['127.0.0.1', '127.0.0.1', '127.0.0.5'].map((address) => connectClient(port, from(address))),
  );
  t.after(() => {
    for (const client of established) client.destroy();
  });
  for (const client of established) await echo(client, 'before');

  // The flood: idle sockets from 127.0.0.2, ClientHellos stalled after 10 bytes from
  // 127.0.0.3. Each connect completes in the kernel's queue whether accepted or not.
  const hello = await captureClientHello({ servername: 'localhost' });
  const flood: Socket[] = [];
  t.after(() => {
    for (const socket of flood) socket.destroy();
  });
  for (let index = 0; index < IDLE_FLOOD; index++) flood.push(await rawFrom(port, '127.0.0.2'));
  for (let index = 0; index < HELLO_FLOOD; index++) {
    const socket = await rawFrom(port, '127.0.0.3');
    socket.write(hello.subarray(0, 10));
    flood.push(socket);
  }
  const paused = await unhitch.waitForLog(
    (line) => line.code === 'UNHITCH_ACCEPT_PAUSED',
    15_000,
    'the pause line',
  );
  assert.equal(paused.reason, 'max_handshakes');
  assert.equal(paused.maxHandshakes, MAX_HANDSHAKES);

  // Established connections keep relaying while the flood holds the budget.
  for (let round = 0; round < 20; round++) {
    for (const client of established) await echo(client, `round ${round}`);
  }
  // The worker took the limit and no more: the rest of the flood waits in the backlog.
  assert.equal(
    await series('unhitch_connections_accepted_total'),
    established.length + MAX_HANDSHAKES,
  );
  assert.equal(await series('unhitch_accept_pauses_total{reason="max_handshakes"}'), 1);

  // A newcomer now waits in the backlog (it is not refused), and is served once the
  // flood is gone.
  const newcomer = connectClient(port, from('127.0.0.4'));
  const outcome = newcomer.then(
    () => 'secure',
    (error: NodeJS.ErrnoException) => error.code ?? error.message,
  );
  for (const socket of flood) socket.destroy();
  assert.equal(await outcome, 'secure');
  const late = await newcomer;
  t.after(() => late.destroy());
  await echo(late, 'served');
  for (const client of established) await echo(client, 'after');

  const pausedSeconds = await series(
    'unhitch_accept_paused_seconds_total{reason="max_handshakes"}',
  );
  assert.ok(pausedSeconds !== undefined && pausedSeconds > 0, `paused ${pausedSeconds} s`);
});
