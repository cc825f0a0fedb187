/**
 * Key exchange across a reload (issue 19: "once seen, the first connection after a SIGHUP
 * negotiated X25519 where every other negotiated X25519MLKEM768"). Every TLS server and
 * SNI context a worker builds gets ecdh-curve from the same options (src/tls/contexts.ts),
 * and a new generation is built from the re-read config before it listens; these tests
 * hold that: connections made from the moment of the SIGHUP on get the configured groups,
 * and a changed ecdh-curve applies once "reloaded" is logged. What does give X25519 to a
 * client that lists the hybrid first is the client's own key share: with one group list
 * (no "/" tuples) OpenSSL 3.5 takes a mutually supported share as it is rather than
 * asking for the hybrid's (HelloRetryRequest).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { connect } from 'node:tls';
import { makeCertificate } from '../kit/pki.js';
import { freePort } from '../kit/ports.js';
import { closeBackend, startBackend, startProxy } from '../kit/proxy-fixture.js';
import { startUnhitch, type UnhitchProcess } from '../kit/unhitch-process.js';

const HYBRID = 'X25519MLKEM768';
const nodeMajor = Number(process.versions.node.split('.')[0]);
const ROUNDS = 3;
/** Connections after "reloaded" too, in case a straggler of the old generation answers. */
const AFTER_RELOADED = 5;

/** The group the server chose for a client offering `offer` (OpenSSL's list syntax). */
function negotiatedGroup(port: number, offer: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: '127.0.0.1',
      port,
      servername: 'localhost',
      rejectUnauthorized: false,
      ecdhCurve: offer,
    });
    socket.once('secureConnect', () => {
      const info = socket.getEphemeralKeyInfo() as { name?: string } | null;
      socket.destroy();
      resolve(info?.name ?? 'unnamed');
    });
    socket.once('error', reject);
  });
}

function reloadedCount(unhitch: UnhitchProcess): number {
  return unhitch.lines.filter((line) => line.msg === 'reloaded').length;
}

/** SIGHUP, then connect back to back until the reload is done and a few times more. */
async function groupsAcrossReload(
  unhitch: UnhitchProcess,
  port: number,
  offer: string,
): Promise<{ during: string[]; after: string[] }> {
  const before = reloadedCount(unhitch);
  unhitch.kill('SIGHUP');
  const during: string[] = [];
  // Bounded by the reload itself: waitForLogs below fails the test after its timeout.
  const reloaded = unhitch.waitForLogs((line) => line.msg === 'reloaded', before + 1, 30_000);
  let done = false;
  void reloaded.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  while (!done) during.push(await negotiatedGroup(port, offer));
  await reloaded;
  const after: string[] = [];
  for (let i = 0; i < AFTER_RELOADED; i++) after.push(await negotiatedGroup(port, offer));
  return { during, after };
}

test('from the SIGHUP on, every connection offering the hybrid first gets it; a changed ecdh-curve applies once reloaded', {
  skip: nodeMajor < 24 ? "Node 22's getEphemeralKeyInfo() does not name the hybrid" : false,
  timeout: 120_000,
}, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-reload-kex-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cert = makeCertificate('reload-kex', ['localhost']);
  const backend = await startBackend((socket) => {
    socket.on('error', () => {});
    socket.resume();
  });
  t.after(() => closeBackend(backend));
  const port = await freePort();
  const configPath = join(dir, 'hitch.conf');
  const conf = (extra = ''): string =>
    `frontend = "[127.0.0.1]:${port}"\nbackend = "[127.0.0.1]:${backend.port}"\n` +
    `workers = 2\npem-file = "${cert.combinedPath}"\n${extra}`;
  writeFileSync(configPath, conf());
  const unhitch = startUnhitch([`--config=${configPath}`]);
  t.after(() => unhitch.kill('SIGKILL'));
  await unhitch.waitForLogs((line) => line.msg === 'worker ready', 2);

  const offer = `${HYBRID}:X25519`;
  for (let round = 0; round < ROUNDS; round++) {
    const { during, after } = await groupsAcrossReload(unhitch, port, offer);
    t.diagnostic(`round ${round}: ${during.length} connections during the reload`);
    assert.deepEqual(
      [...during, ...after].filter((group) => group !== HYBRID),
      [],
      `round ${round}: every connection negotiated ${HYBRID}`,
    );
  }

  // The new generation is built from the re-read file: X25519 only, from "reloaded" on.
  writeFileSync(configPath, conf('ecdh-curve = "X25519"\n'));
  const { after } = await groupsAcrossReload(unhitch, port, offer);
  assert.deepEqual(after, Array(AFTER_RELOADED).fill('X25519'));
});

test('a client listing the hybrid first but sending only an X25519 key share gets X25519 at once', {
  skip: nodeMajor < 24 ? "Node 22's getEphemeralKeyInfo() does not name the hybrid" : false,
}, async (t) => {
  const backend = await startBackend((socket) => socket.resume());
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port);
  t.after(() => proxy.close());
  // OpenSSL 3.5 syntax: "*" marks the groups the client sends a key share for.
  assert.equal(await negotiatedGroup(proxy.port, `${HYBRID}:*X25519`), 'X25519');
  assert.equal(await negotiatedGroup(proxy.port, `*${HYBRID}:*X25519`), HYBRID);
  assert.equal(await negotiatedGroup(proxy.port, `${HYBRID}:X25519`), HYBRID);
});
