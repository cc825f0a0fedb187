/**
 * What the backend is told about a client (PROXY header, write-ip, X-Forwarded-For) is
 * worked out before the backend is dialled: a client it cannot be said of is closed with
 * a logged reason, and nothing throws where it would end the worker.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { BackendConnector } from '../../src/proxy/backend.js';
import { type ConnectionSettings, proxyConnection } from '../../src/proxy/connection.js';
import { type ConnectionFailureReason, NOOP_OBSERVER } from '../../src/proxy/events.js';
import { localhostCertificate } from '../kit/pki.js';
import {
  CapturedLog,
  closeBackend,
  connectClient,
  readAll,
  startBackend,
} from '../kit/proxy-fixture.js';

const BASE: ConnectionSettings = {
  proxyProtocol: 'off',
  proxyTlv: false,
  proxyAuthority: false,
  proxyClientCert: false,
  writeIp: false,
  forwardedFor: false,
  requestHeadTimeoutMs: 30_000,
  keepaliveSec: 0,
};

const CASES: ReadonlyArray<readonly [string, Partial<ConnectionSettings>, string]> = [
  ['forwarded-for', { forwardedFor: true }, 'UNHITCH_FORWARDED_ADDRESS'],
  ['write-ip', { writeIp: true }, 'UNHITCH_WRITE_IP'],
];

for (const [name, settings, code] of CASES) {
  test(`${name}: a client address that is not an IP closes the client with a reason`, {
    timeout: 15_000,
  }, async (t) => {
    const backend = await startBackend(() => {});
    t.after(() => closeBackend(backend));
    let backendConnections = 0;
    backend.server.on('connection', () => {
      backendConnections += 1;
    });
    const log = new CapturedLog();
    const failures: ConnectionFailureReason[] = [];
    const certificate = localhostCertificate().material;
    const server = createTlsServer({ key: certificate.key, cert: certificate.cert });
    t.after(() => server.close());
    const done = new Promise<void>((resolve) => {
      server.on('secureConnection', (socket: TLSSocket) => {
        proxyConnection(
          socket,
          {
            acceptedAt: performance.now(),
            // What node reports for a socket whose peer is already gone.
            endpoints: {
              sourceAddress: '',
              sourcePort: 0,
              destinationAddress: '',
              destinationPort: 0,
            },
          },
          {
            connector: new BackendConnector({
              address: { kind: 'tcp', host: '127.0.0.1', port: backend.port },
              connectTimeoutMs: 2_000,
              sourceAddresses: [],
            }),
            settings: { ...BASE, ...settings },
            observer: { ...NOOP_OBSERVER, connectionFailed: (reason) => failures.push(reason) },
            logger: log.logger,
            onFdExhausted: () => {},
            connectionDone: () => resolve(),
          },
        );
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const address = server.address();
    assert.ok(address !== null && typeof address === 'object');
    const client = await connectClient(address.port);
    client.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    // A clean TLS close: the client reads its end, not an error.
    assert.equal((await readAll(client)).length, 0);
    client.end();
    await done;
    assert.deepEqual(failures, ['client_info_invalid']);
    const [line] = log.withReason('client_info_invalid');
    assert.equal((line?.err as { code?: string } | undefined)?.code, code);
    assert.equal(backendConnections, 0, 'the backend is not dialled for it');
  });
}
