/**
 * Key exchange: by default a client that offers the post-quantum hybrid X25519MLKEM768
 * (what current browsers send first) gets it; `ecdh-curve` still restricts the groups.
 * Node 24's getEphemeralKeyInfo() names the hybrid group; Node 22's returns {} for it,
 * so the cross-version proof is a client that offers nothing else and still connects.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { DEFAULT_CONFIG } from '../../src/config/model.js';
import { TlsProxy } from '../../src/proxy/proxy.js';
import { ACME_TLS_ALPN, AcmeChallengeResponder } from '../../src/tls/acme-challenge.js';
import { localhostCertificate, makeCertificate } from '../kit/pki.js';
import {
  CapturedLog,
  closeBackend,
  connectClient,
  frontendOn,
  startBackend,
  startProxy,
  waitFor,
} from '../kit/proxy-fixture.js';

const HYBRID = 'X25519MLKEM768';
const nodeMajor = Number(process.versions.node.split('.')[0]);

/** The group name where node reports it (Node 24 for the hybrid), else undefined. */
function groupOf(socket: TLSSocket): string | undefined {
  const info = socket.getEphemeralKeyInfo() as { name?: string } | null;
  return info?.name;
}

test('default ecdh-curve lists X25519MLKEM768 first', () => {
  assert.equal(DEFAULT_CONFIG.ecdhCurve.split(':')[0], HYBRID);
});

test('defaults: a client offering X25519MLKEM768 negotiates it', async (t) => {
  const backend = await startBackend((socket) => socket.resume());
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port);
  t.after(() => proxy.close());

  // Only the hybrid on offer: the handshake can succeed with nothing else.
  const onlyHybrid = await connectClient(proxy.port, { ecdhCurve: HYBRID });
  t.after(() => onlyHybrid.destroy());
  assert.equal(onlyHybrid.getProtocol(), 'TLSv1.3');
  if (nodeMajor >= 24) assert.equal(groupOf(onlyHybrid), HYBRID);

  // A browser-like offer (hybrid first, X25519 as fallback): the hybrid wins.
  const browserLike = await connectClient(proxy.port, { ecdhCurve: `${HYBRID}:X25519:P-256` });
  t.after(() => browserLike.destroy());
  if (nodeMajor >= 24) assert.equal(groupOf(browserLike), HYBRID);

  // A classic-only client still connects, on a classic group.
  const classic = await connectClient(proxy.port, { ecdhCurve: 'P-256' });
  t.after(() => classic.destroy());
  assert.equal(groupOf(classic), 'prime256v1');
  t.diagnostic(`node ${process.versions.node}, OpenSSL ${process.versions.openssl}`);
});

test('ecdh-curve = "X25519": a client offering only X25519MLKEM768 is refused', async (t) => {
  const backend = await startBackend((socket) => socket.resume());
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port, { ecdhCurve: 'X25519' });
  t.after(() => proxy.close());

  await assert.rejects(connectClient(proxy.port, { ecdhCurve: HYBRID }), (error: Error) => {
    assert.match(error.message, /handshake failure|no suitable key share|alert/i);
    return true;
  });
  // Control: the same proxy serves a client that offers X25519.
  const control = await connectClient(proxy.port, { ecdhCurve: `${HYBRID}:X25519` });
  t.after(() => control.destroy());
  assert.equal(groupOf(control), 'X25519');
  await waitFor(
    () => proxy.log.withReason('handshake_error').length === 1,
    5_000,
    'the refusal in the log',
  );
});

test('ecdh-curve holds for ACME tls-alpn-01 handshakes too (the challenge server)', async (t) => {
  const backend = await startBackend((socket) => socket.resume());
  t.after(() => closeBackend(backend));
  const challenge = makeCertificate('key-exchange-acme', ['localhost']);
  const responder = new AcmeChallengeResponder(['localhost']);
  assert.ok(responder.open('localhost', challenge.cert, readFileSync(challenge.keyPath)));
  const log = new CapturedLog();
  const proxy = await TlsProxy.start({
    config: {
      ...DEFAULT_CONFIG,
      source: '<test>',
      frontends: [frontendOn()],
      backend: { kind: 'tcp', host: '127.0.0.1', port: backend.port },
      ecdhCurve: 'P-384',
    },
    certificates: [localhostCertificate().material],
    logger: log.logger,
    acmeChallenges: responder,
  });
  t.after(() => proxy.destroy());
  const port = proxy.addresses()[0]?.port ?? 0;

  // X25519 first on offer: a server that ignored ecdh-curve would take it.
  const offer = 'X25519:P-384';
  const validation = await connectClient(port, {
    ALPNProtocols: [ACME_TLS_ALPN],
    ecdhCurve: offer,
  });
  t.after(() => validation.destroy());
  assert.equal(validation.alpnProtocol, ACME_TLS_ALPN, 'answered by the challenge server');
  assert.equal(groupOf(validation), 'secp384r1');
  // Control: an ordinary handshake on the same frontend.
  const ordinary = await connectClient(port, { ecdhCurve: offer });
  t.after(() => ordinary.destroy());
  assert.equal(groupOf(ordinary), 'secp384r1');
});
