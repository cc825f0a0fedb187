/**
 * TLS 1.2 client-initiated renegotiation is refused (Hitch and HAProxy refuse it: each
 * renegotiation is a full handshake the client can demand at will), checked with
 * `openssl s_client`'s `R` command over a live connection.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import { test } from 'node:test';
import { closeBackend, startBackend, startProxy, waitFor } from '../kit/proxy-fixture.js';

test('openssl s_client -tls1_2: the R command is refused and nothing after it is relayed', async (t) => {
  const received: string[] = [];
  const backend = await startBackend((socket: Socket) => {
    socket.on('data', (chunk: Buffer) => {
      received.push(chunk.toString());
      socket.write(`echo:${chunk}`);
    });
    socket.on('error', () => {});
  });
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port);
  t.after(() => proxy.close());

  const child = spawn(
    'openssl',
    ['s_client', '-connect', `127.0.0.1:${proxy.port}`, '-tls1_2', '-servername', 'localhost'],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  t.after(() => child.kill('SIGKILL'));
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stdin.on('error', () => {});
  let exitCode: number | null | undefined;
  child.once('exit', (code) => {
    exitCode = code;
  });

  child.stdin.write('before\n');
  await waitFor(
    () => output.includes('echo:before'),
    10_000,
    `echo before renegotiation: ${output}`,
  );
  child.stdin.write('R\n');
  await waitFor(() => output.includes('RENEGOTIATING'), 10_000, 'RENEGOTIATING');
  // OpenSSL answers the renegotiation ClientHello with no_renegotiation; s_client gives up.
  await waitFor(() => exitCode !== undefined, 10_000, `s_client to give up: ${output}`);
  assert.match(output, /no renegotiation/, output);
  assert.deepEqual(received, ['before\n'], 'nothing after the renegotiation attempt');
});
