/**
 * A small plain-HTTP server for the services process's endpoints (ACME http-01, metrics):
 * each takes bytes from clients it cannot trust, so each is held to a connection cap, a
 * short time for the request head and the request, a short idle time, and a small head.
 * One place sets node's knobs for that, so the two endpoints cannot drift apart.
 */
import { once } from 'node:events';
import { createServer, type RequestListener, type Server } from 'node:http';
import type { ListenHandle } from './listen-socket.js';

export interface HttpBounds {
  /** Connections at once; more are closed on accept. */
  readonly maxConnections: number;
  /** From accept to the end of the request head (node's headersTimeout). */
  readonly headersTimeoutMs: number;
  /** From accept to the end of the request. */
  readonly requestTimeoutMs: number;
  /** An idle kept-alive connection, and a socket silent this long at any point. */
  readonly idleTimeoutMs: number;
  readonly maxHeaderBytes: number;
}

/** How often node checks the timeouts (its default is every 30 s). */
const TIMEOUT_CHECK_INTERVAL_MS = 1_000;

export function createBoundedHttpServer(bounds: HttpBounds, onRequest: RequestListener): Server {
  const server = createServer(
    {
      headersTimeout: bounds.headersTimeoutMs,
      requestTimeout: bounds.requestTimeoutMs,
      keepAliveTimeout: bounds.idleTimeoutMs,
      connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
      maxHeaderSize: bounds.maxHeaderBytes,
    },
    onRequest,
  );
  server.maxConnections = bounds.maxConnections;
  // A socket that sends nothing at all is closed too (the head timeout only runs once
  // node's parser has a request to time).
  server.setTimeout(bounds.idleTimeoutMs, (socket) => socket.destroy());
  return server;
}

/** Serve on `where` (a handle bound elsewhere, or host:port); resolves with the port. */
export async function listenBounded(
  server: Server,
  where: ListenHandle | { readonly host: string; readonly port: number },
): Promise<number> {
  const listening = once(server, 'listening');
  if ('getsockname' in where) server.listen(where);
  else server.listen(where.port, where.host);
  await listening;
  const bound = server.address();
  return bound !== null && typeof bound === 'object' ? bound.port : 0;
}

/** Close the server and every connection (clients keep them alive; none may hold up a stop). */
export async function stopBounded(server: Server): Promise<void> {
  if (!server.listening) return;
  const closed = once(server, 'close');
  server.close();
  server.closeAllConnections();
  await closed;
}
