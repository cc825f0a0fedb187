/**
 * http-01 (RFC 8555 8.3): answers GET /.well-known/acme-challenge/TOKEN on a plain-HTTP
 * port with the key authorization, for tokens of open challenges only; every other
 * request gets 404. It runs in the unprivileged services process, on a socket the
 * primary bound (port 80 needs root to bind, not to accept).
 *
 * The port is open to the whole internet while it exists, so it is held small: at most
 * HTTP_CHALLENGE_MAX_CONNECTIONS connections at once (more are closed on accept), a few
 * seconds to send a request, and an idle connection is closed after a few seconds. A CA
 * validates with a handful of one-shot GETs, each answered in milliseconds.
 */
import type { Server } from 'node:http';
import { createBoundedHttpServer, listenBounded, stopBounded } from '../net/bounded-http.js';
import type { ListenHandle } from '../net/listen-socket.js';

const PREFIX = '/.well-known/acme-challenge/';

/** Connections at once; enough for every validation vantage point of a CA, and retries. */
export const HTTP_CHALLENGE_MAX_CONNECTIONS = 64;
/** From accept to the end of the request head (node's headersTimeout). */
export const HTTP_CHALLENGE_HEADERS_TIMEOUT_MS = 5_000;
/** From accept to the end of the request (a GET has no body to wait for). */
export const HTTP_CHALLENGE_REQUEST_TIMEOUT_MS = 5_000;
/** An idle kept-alive connection, and a socket silent this long at any point. */
export const HTTP_CHALLENGE_IDLE_TIMEOUT_MS = 5_000;
/** A challenge request's head is a few hundred bytes. */
const MAX_HEADER_BYTES = 4_096;

export class HttpChallengeServer {
  private readonly answers = new Map<string, string>();
  private readonly server: Server;

  constructor() {
    this.server = createBoundedHttpServer(
      {
        maxConnections: HTTP_CHALLENGE_MAX_CONNECTIONS,
        headersTimeoutMs: HTTP_CHALLENGE_HEADERS_TIMEOUT_MS,
        requestTimeoutMs: HTTP_CHALLENGE_REQUEST_TIMEOUT_MS,
        idleTimeoutMs: HTTP_CHALLENGE_IDLE_TIMEOUT_MS,
        maxHeaderBytes: MAX_HEADER_BYTES,
      },
      (request, response) => {
        const path = (request.url ?? '').split('?')[0] ?? '';
        const answer = path.startsWith(PREFIX)
          ? this.answers.get(path.slice(PREFIX.length))
          : undefined;
        if ((request.method === 'GET' || request.method === 'HEAD') && answer !== undefined) {
          response.writeHead(200, { 'content-type': 'application/octet-stream' });
          response.end(answer);
          return;
        }
        response.writeHead(404, { 'content-type': 'text/plain' });
        response.end('not found\n');
      },
    );
  }

  /** Serve on `handle` (bound elsewhere); resolves with the port. */
  listen(handle: ListenHandle): Promise<number> {
    return listenBounded(this.server, handle);
  }

  open(token: string, keyAuthorization: string): void {
    this.answers.set(token, keyAuthorization);
  }

  close(token: string): void {
    this.answers.delete(token);
  }

  stop(): Promise<void> {
    return stopBounded(this.server);
  }
}
