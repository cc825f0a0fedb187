/** Loopback port helpers for benches that start separate processes. */
import { createConnection, createServer } from 'node:net';

/** A port that was free on 127.0.0.1 a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('no port'));
      });
    });
  });
}

function tryConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      // A port in the ephemeral range can be "connected" to itself (TCP simultaneous open)
      // when nothing listens yet; that would hold the port the server is about to bind.
      const selfConnected = socket.localPort === port;
      socket.destroy();
      resolve(!selfConnected);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Resolves once 127.0.0.1:port accepts TCP connections; rejects after timeoutMs. */
export async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await tryConnect(port)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw Object.assign(new Error(`nothing listening on 127.0.0.1:${port} after ${timeoutMs} ms`), {
    code: 'BENCH_PORT_TIMEOUT',
  });
}
