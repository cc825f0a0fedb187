/**
 * An in-process Proxy on 127.0.0.1:0 built straight from the config model (no parser),
 * with its log lines captured, plus plain TCP backends to put behind it (certificates:
 * pki.ts).
 */
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { type ConnectionOptions, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { pino } from 'pino';
import {
  DEFAULT_CONFIG,
  DEFAULT_TLS,
  type FrontendConfig,
  type ProxyConfig,
  type TlsSettings,
} from '../../src/config/model.js';
import type { ProxyObserver } from '../../src/proxy/events.js';
import { TlsProxy } from '../../src/proxy/proxy.js';
import type { CertificateMaterial } from '../../src/tls/material.js';
import { eventually } from './eventually.js';
import { localhostCertificate } from './pki.js';

export interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly reason?: string;
  readonly [key: string]: unknown;
}

export class CapturedLog {
  readonly lines: LogLine[] = [];
  readonly logger = pino(
    { level: 'debug' },
    new Writable({
      write: (chunk: Buffer, _encoding, callback) => {
        for (const line of chunk.toString('utf8').split('\n')) {
          if (line.trim()) this.lines.push(JSON.parse(line) as LogLine);
        }
        callback();
      },
    }),
  );

  withReason(reason: string): LogLine[] {
    return this.lines.filter((line) => line.reason === reason);
  }
}

export function frontendOn(port = 0, tls: Partial<TlsSettings> = {}): FrontendConfig {
  return {
    ...DEFAULT_TLS,
    ...tls,
    address: { kind: 'tcp', host: '127.0.0.1', port },
    pemFiles: [],
    matchGlobalCerts: false,
  };
}

export interface RunningProxy {
  readonly proxy: TlsProxy;
  readonly port: number;
  readonly log: CapturedLog;
  close(): void;
}

export async function startProxy(
  backendPort: number,
  overrides: Partial<ProxyConfig> = {},
  certificates: readonly CertificateMaterial[] = [localhostCertificate().material],
  observer?: ProxyObserver,
): Promise<RunningProxy> {
  const log = new CapturedLog();
  const config: ProxyConfig = {
    ...DEFAULT_CONFIG,
    source: '<test>',
    frontends: [frontendOn()],
    backend: { kind: 'tcp', host: '127.0.0.1', port: backendPort },
    ...overrides,
  };
  const proxy = await TlsProxy.start({
    config,
    certificates,
    logger: log.logger,
    ...(observer ? { observer } : {}),
  });
  const port = proxy.addresses()[0]?.port ?? 0;
  return { proxy, port, log, close: () => proxy.destroy() };
}

/** A plain TCP backend; `onSocket` sees each accepted connection. */
export async function startBackend(
  onSocket: (socket: Socket) => void,
): Promise<{ server: Server; port: number; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    onSocket(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port, sockets };
}

export function closeBackend(backend: { server: Server; sockets: Set<Socket> }): void {
  for (const socket of backend.sockets) socket.destroy();
  backend.server.close();
}

/** A TLS client to the proxy that trusts nothing and checks nothing (tests look at bytes). */
export function connectClient(port: number, options: ConnectionOptions = {}): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({
      host: '127.0.0.1',
      port,
      rejectUnauthorized: false,
      servername: 'localhost',
      allowHalfOpen: true,
      ...options,
    } as ConnectionOptions);
    socket.once('secureConnect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** Reads a socket to its end. */
export function readAll(socket: Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.once('end', () => resolve(Buffer.concat(chunks)));
    socket.once('error', reject);
  });
}

/** Resolves when `predicate` holds (state without an event); rejects after `timeoutMs`. */
export async function waitFor(
  predicate: () => boolean,
  timeoutMs = 5_000,
  what = 'condition',
): Promise<void> {
  await eventually(() => (predicate() ? true : undefined), timeoutMs, what);
}
