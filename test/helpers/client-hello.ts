/**
 * The first flight of a real node:tls client (its ClientHello), caught by a plain TCP
 * listener, for tests that play a client byte by byte.
 */
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { type ConnectionOptions, connect as tlsConnect } from 'node:tls';
import { closeBackend, startBackend, waitFor } from './proxy-fixture.js';

export async function captureClientHello(options: ConnectionOptions = {}): Promise<Buffer> {
  const catcher = await startBackend(() => {});
  try {
    const client = tlsConnect({
      host: '127.0.0.1',
      port: catcher.port,
      servername: 'localhost',
      rejectUnauthorized: false,
      ...options,
    });
    client.on('error', () => {});
    await waitFor(() => catcher.sockets.size === 1, 5_000, 'client hello connection');
    const [socket] = [...catcher.sockets] as [Socket];
    const [hello] = (await once(socket, 'data')) as [Buffer];
    client.destroy();
    return hello;
  } finally {
    closeBackend(catcher);
  }
}
