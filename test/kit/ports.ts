/**
 * Loopback ports for tests and benches that start separate processes (which cannot share
 * port 0), and a wait until something listens on one.
 */
import { createConnection, createServer, type Server } from 'node:net';

const handedOut = new Set<number>();

/** A port that was free a moment ago on 127.0.0.1. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  // Drawn below the ephemeral range: a port listen(0) hands out is one the kernel may give
  // the next outgoing connection (the services process asking the ACME CA, a worker's
  // backend connection) before the test binds it, and the start then fails EADDRINUSE.
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = PAIR_RANGE.low + Math.floor(Math.random() * (PAIR_RANGE.high - PAIR_RANGE.low));
    // Two calls before either port is bound must not get the same one.
    if (handedOut.has(port)) continue;
    const held = await holdPort(port, host);
    if (held === undefined) continue;
    await new Promise((resolve) => held.close(resolve));
    handedOut.add(port);
    return port;
  }
  return kernelChosenPort(host);
}

function kernelChosenPort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('no port'));
      });
    });
  });
}

const PAIR_RANGE = { low: 20_000, high: 32_000 } as const;

function holdPort(port: number, host: string): Promise<Server | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(undefined));
    server.listen(port, host, () => resolve(server));
  });
}

/**
 * A port P with P+1 also free (the demo puts its tracker on the next port). Drawn below the
 * ephemeral range, so the thousands of client sockets other tests and benches open cannot
 * take P+1 from under it; P is held while P+1 is tried.
 */
export async function freePortPair(host = '127.0.0.1'): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = PAIR_RANGE.low + Math.floor(Math.random() * (PAIR_RANGE.high - PAIR_RANGE.low));
    const first = await holdPort(port, host);
    if (first === undefined) continue;
    const second = await holdPort(port + 1, host);
    await new Promise((resolve) => first.close(resolve));
    if (second === undefined) continue;
    await new Promise((resolve) => second.close(resolve));
    return port;
  }
  throw new Error('no free port pair');
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
