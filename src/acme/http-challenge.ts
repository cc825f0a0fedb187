/**
 * http-01 (RFC 8555 8.3): the primary answers GET /.well-known/acme-challenge/TOKEN on a
 * plain-HTTP port with the key authorization, for tokens of open challenges only; every
 * other request gets 404. The listener lives as long as the acme block asks for it.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { TcpAddress } from '../config/model.js';

const PREFIX = '/.well-known/acme-challenge/';

export class HttpChallengeServer {
  private readonly answers = new Map<string, string>();
  private readonly server: Server;

  constructor(private readonly address: TcpAddress) {
    this.server = createServer((request, response) => {
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
    });
    // Validation requests are one-shot; idle keep-alive sockets must not hold a stop up.
    this.server.keepAliveTimeout = 1_000;
  }

  async listen(): Promise<number> {
    this.server.listen({
      host: this.address.host ?? '::',
      port: this.address.port,
      ipv6Only: false,
    });
    await once(this.server, 'listening');
    const bound = this.server.address();
    return bound !== null && typeof bound === 'object' ? bound.port : this.address.port;
  }

  open(token: string, keyAuthorization: string): void {
    this.answers.set(token, keyAuthorization);
  }

  close(token: string): void {
    this.answers.delete(token);
  }

  async stop(): Promise<void> {
    const closed = once(this.server, 'close');
    this.server.close();
    this.server.closeAllConnections();
    await closed;
  }
}
