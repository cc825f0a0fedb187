/**
 * The SNI callback runs inside OpenSSL's handshake: a throw there would be an uncaught
 * exception and take the worker (and every other client on it) down. It must not.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { DEFAULT_TLS } from '../../src/config/model.js';
import {
  CertificateSelector,
  type FrontendTlsPolicy,
  frontendTlsPlan,
  serverOptions,
} from '../../src/tls/contexts.js';
import { makeCertificate } from '../kit/pki.js';

const first = makeCertificate('sni-cb-first', ['first.example']);
const second = makeCertificate('sni-cb-second', ['second.example']);

function policy(sniNomatchAbort: boolean): FrontendTlsPolicy {
  return {
    ...DEFAULT_TLS,
    sniNomatchAbort,
    ecdhCurve: 'auto',
    alpnProtos: [],
    matchGlobalCerts: false,
  };
}

/** A selector whose lookup throws, as a bug or a hostile name might make it. */
class ThrowingSelector extends CertificateSelector {
  override select(servername: string): never {
    throw new Error(`lookup blew up on ${servername}`);
  }
}

async function handshake(
  sniNomatchAbort: boolean,
): Promise<{ peer?: string; error?: NodeJS.ErrnoException; uncaught: Error[] }> {
  const uncaught: Error[] = [];
  const onUncaught = (error: Error): void => {
    uncaught.push(error);
  };
  process.on('uncaughtException', onUncaught);
  const selector = new ThrowingSelector([first.material, second.material], policy(sniNomatchAbort));
  const server = createServer(serverOptions(selector, policy(sniNomatchAbort), undefined));
  server.on('secureConnection', (socket: TLSSocket) => socket.end());
  server.on('tlsClientError', () => {});
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  try {
    const client = connect({
      port,
      host: '127.0.0.1',
      servername: 'first.example',
      rejectUnauthorized: false,
    });
    return await new Promise((resolve) => {
      client.once('secureConnect', () => {
        const cert = client.getPeerCertificate();
        client.destroy();
        resolve({ peer: String(cert.subject?.CN), uncaught });
      });
      client.once('error', (error) => resolve({ error, uncaught }));
    });
  } finally {
    server.close();
    process.off('uncaughtException', onUncaught);
  }
}

test('a throwing certificate lookup falls back to the default certificate, nothing uncaught', async () => {
  const result = await handshake(false);
  assert.deepEqual(result.uncaught, []);
  assert.equal(result.error, undefined);
  // Hitch's default is the last pem-file.
  assert.equal(result.peer, 'second.example');
});

test('with sni-nomatch-abort a throwing lookup refuses the handshake, nothing uncaught', async () => {
  const result = await handshake(true);
  assert.deepEqual(result.uncaught, []);
  assert.ok(result.error, 'the client sees the handshake refused');
  assert.equal(result.peer, undefined);
});

test("each client-certificate policy's server serves only its own certificates by SNI", () => {
  // second.example requires client certificates; the default (first) does not.
  const strict = {
    ...second.material,
    clientVerify: 'required' as const,
    clientVerifyCa: first.material.cert,
  };
  const plan = frontendTlsPlan(
    new CertificateSelector([strict, first.material], policy(false)),
    policy(false),
    undefined,
  );
  assert.equal(plan.servers.length, 2);
  const routed = plan.route?.('second.example');
  assert.equal(routed, 1);
  const answer = (server: number, name: string): Error | null | undefined => {
    let result: Error | null | undefined;
    plan.servers[server]?.options.SNICallback?.(name, (error) => {
      result = error;
    });
    return result;
  };
  // The policy-less default server must not hand out the strict certificate (OpenSSL would
  // keep its no-client-certificate verify mode); its own name and unknown names are served.
  assert.ok(answer(0, 'second.example') instanceof Error);
  assert.equal(answer(0, 'first.example'), null);
  assert.equal(answer(0, 'unknown.example'), null);
  assert.equal(answer(1, 'second.example'), null);
  assert.ok(answer(1, 'first.example') instanceof Error);
});
