import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BackendAddress } from '../../src/config/model.js';
import { BackendConnector } from '../../src/proxy/backend.js';
import type { BackendResolver } from '../../src/proxy/backend-resolver.js';

function connector(address: BackendAddress, resolved?: string): BackendConnector {
  return new BackendConnector({
    address,
    ...(resolved === undefined ? {} : { resolver: { target: resolved } as BackendResolver }),
    connectTimeoutMs: 1000,
    sourceAddresses: [],
  });
}

test('backend keepalive only where a probe can find something out: not over loopback or a unix socket', () => {
  const tcp = (host: string | undefined): BackendAddress => ({ kind: 'tcp', host, port: 8000 });
  assert.equal(connector(tcp('127.0.0.1')).keepaliveUseful(), false);
  assert.equal(connector(tcp('127.9.8.7')).keepaliveUseful(), false);
  assert.equal(connector(tcp('::1')).keepaliveUseful(), false);
  assert.equal(connector(tcp('::ffff:127.0.0.1')).keepaliveUseful(), false);
  assert.equal(connector(tcp(undefined)).keepaliveUseful(), false, 'no host: 127.0.0.1');
  assert.equal(connector({ kind: 'unix', path: '/run/backend.sock' }).keepaliveUseful(), false);
  assert.equal(connector(tcp('10.1.2.3')).keepaliveUseful(), true);
  assert.equal(connector(tcp('2001:db8::1')).keepaliveUseful(), true);
  // A name: what it resolved to decides; unresolved, keepalive stays on.
  assert.equal(connector(tcp('backend.example'), '127.0.0.1').keepaliveUseful(), false);
  assert.equal(connector(tcp('backend.example'), '192.0.2.7').keepaliveUseful(), true);
  assert.equal(connector(tcp('backend.example')).keepaliveUseful(), true);
});
