/**
 * ssl-handshake-timeout is one budget from TCP accept to the handshake's end, also when
 * unhitch reads the ClientHello itself first (sni-nomatch-abort, client-verify routing,
 * proxy-proxy): the time a client takes to send its hello is not granted twice.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as netConnect } from 'node:net';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_TLS } from '../../src/config/model.js';
import { captureClientHello } from '../helpers/client-hello.js';
import { closeBackend, startBackend, startProxy, waitFor } from '../kit/proxy-fixture.js';

const BUDGET_MS = 3_000;
/** The hello is complete at this point of the budget; then the client stalls. */
const HELLO_DONE_MS = 2_400;

/**
 * Trickles `preamble` + hello in pieces so the last byte leaves at about HELLO_DONE_MS,
 * then stalls. Returns how long the connection lived and when the hello was complete
 * (both late on a loaded machine).
 */
async function lateHelloLifetime(
  port: number,
  bytes: Buffer,
): Promise<{ livedMs: number; helloDoneMs: number }> {
  const client = netConnect({ port, host: '127.0.0.1' });
  client.on('error', () => {});
  await once(client, 'connect');
  const started = performance.now();
  client.resume();
  const closed = once(client, 'close');
  const pieces = 4;
  const size = Math.ceil(bytes.length / pieces);
  for (let index = 0; index < pieces && !client.destroyed; index++) {
    await sleep(HELLO_DONE_MS / pieces);
    client.write(bytes.subarray(index * size, (index + 1) * size));
  }
  const helloDoneMs = performance.now() - started;
  await closed;
  return { livedMs: performance.now() - started, helloDoneMs };
}

for (const proxyProxy of [false, true]) {
  test(`a ClientHello read first does not extend ssl-handshake-timeout${proxyProxy ? ' (proxy-proxy)' : ''}`, async (t) => {
    const backend = await startBackend(() => {});
    t.after(() => closeBackend(backend));
    const proxy = await startProxy(backend.port, {
      tls: { ...DEFAULT_TLS, sniNomatchAbort: true },
      sslHandshakeTimeoutMs: BUDGET_MS,
      proxyProxy,
    });
    t.after(() => proxy.close());
    const hello = await captureClientHello({ servername: 'localhost' });
    const header = Buffer.from(proxyProxy ? 'PROXY TCP4 192.0.2.1 192.0.2.2 5555 443\r\n' : '');
    const { livedMs, helloDoneMs } = await lateHelloLifetime(
      proxy.port,
      Buffer.concat([header, hello]),
    );
    // Before: node's own full budget again from the hello on (helloDone + 3 s, ~5.4 s).
    // Now: the budget from accept (~3 s, ~0.6 s after the hello). Judged against the
    // hello's real end, with half a budget of margin for a loaded machine's late timers.
    assert.ok(
      livedMs < helloDoneMs + BUDGET_MS / 2,
      `connection lived ${Math.round(livedMs)} ms, hello done at ${Math.round(helloDoneMs)} ms`,
    );
    await waitFor(
      () => proxy.log.withReason('handshake_timeout').length === 1,
      5_000,
      'handshake_timeout log line',
    );
    await waitFor(() => proxy.proxy.activeConnections === 0, 5_000, 'gauge back to 0');
  });
}
