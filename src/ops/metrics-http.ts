/**
 * The metrics endpoint's HTTP side: parses the scraper's request and answers it with the
 * exposition text it asks for elsewhere. In unhitch it runs in the unprivileged services
 * process (cluster/net-services.ts), on a loopback socket the primary bound; the text
 * comes from the primary over IPC, so the root primary never reads a byte a metrics
 * client sent. It imports nothing of prom-client (slow to load) for that reason.
 *
 * Loopback is still reachable by every local user, so the endpoint is held small: at
 * most METRICS_MAX_CONNECTIONS at once (more are closed on accept), a few seconds to send
 * a request head, and an idle connection (kept alive or silent from the start) is closed
 * after a few seconds. A scrape is one GET every few seconds.
 */
import type { Server, ServerResponse } from 'node:http';
import { createBoundedHttpServer, listenBounded, stopBounded } from '../net/bounded-http.js';
import type { ListenHandle } from '../net/listen-socket.js';

/** Connections at once: a Prometheus or two, a curl, with room for retries. */
export const METRICS_MAX_CONNECTIONS = 16;
/** From accept to the end of the request head (node's headersTimeout). */
export const METRICS_HEADERS_TIMEOUT_MS = 5_000;
/** From accept to the end of the request (a GET has no body to wait for). */
export const METRICS_REQUEST_TIMEOUT_MS = 10_000;
/** An idle kept-alive connection, and a socket silent this long at any point. */
export const METRICS_IDLE_TIMEOUT_MS = 5_000;
/** A scrape's request head is a few hundred bytes. */
const MAX_HEADER_BYTES = 8_192;

/** What GET /metrics answers: the exposition (200), or why there is none (500). */
export interface MetricsAnswer {
  readonly status: number;
  readonly body: string;
  readonly contentType: string;
}

function respond(
  response: ServerResponse,
  status: number,
  body: string,
  contentType = 'text/plain',
): void {
  response.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store' });
  response.end(body);
}

export class MetricsHttpServer {
  private readonly server: Server;

  /** `ask`: the exposition now; it never rejects (a failure is a 500 answer). */
  constructor(ask: () => Promise<MetricsAnswer>) {
    this.server = createBoundedHttpServer(
      {
        maxConnections: METRICS_MAX_CONNECTIONS,
        headersTimeoutMs: METRICS_HEADERS_TIMEOUT_MS,
        requestTimeoutMs: METRICS_REQUEST_TIMEOUT_MS,
        idleTimeoutMs: METRICS_IDLE_TIMEOUT_MS,
        maxHeaderBytes: MAX_HEADER_BYTES,
      },
      (request, response) => {
        const path = (request.url ?? '/').split('?')[0];
        if (path !== '/metrics') {
          respond(response, 404, 'not found\n');
          return;
        }
        if (request.method !== 'GET' && request.method !== 'HEAD') {
          response.setHeader('allow', 'GET, HEAD');
          respond(response, 405, 'method not allowed\n');
          return;
        }
        void ask().then((answer) =>
          respond(response, answer.status, answer.body, answer.contentType),
        );
      },
    );
  }

  /** Serve on `handle` (bound elsewhere), or bind `host:port` here; resolves with the port. */
  listen(where: ListenHandle | { readonly host: string; readonly port: number }): Promise<number> {
    return listenBounded(this.server, where);
  }

  stop(): Promise<void> {
    return stopBounded(this.server);
  }
}
