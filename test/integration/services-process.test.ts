/**
 * No byte from the network is read as root: the ACME order, the http-01 listener and the
 * OCSP fetches run in the services process, which is not uid 0 (seen from the kernel: the
 * process that holds the server end of a live http-01 connection, and the one that holds
 * the client end of a live OCSP request or of a live connection to the ACME CA). The
 * http-01 port is held small: an idle or slow connection is closed after seconds, and
 * connections beyond the cap are refused.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { type AddressInfo, connect, createServer as createNetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import {
  HTTP_CHALLENGE_IDLE_TIMEOUT_MS,
  HTTP_CHALLENGE_MAX_CONNECTIONS,
} from '../../src/acme/http-challenge.js';
import { loopbackSocketInode, processIdentity, socketOwners } from '../helpers/proc-net.js';
import { eventually } from '../kit/eventually.js';
import { issue, makeCa } from '../kit/pki.js';
import { freePort } from '../kit/ports.js';
import { closeBackend, startBackend } from '../kit/proxy-fixture.js';
import { startUnhitch, type UnhitchProcess } from '../kit/unhitch-process.js';

/** How long past the idle timeout a closed connection may take (node checks every second). */
const CLOSE_SLACK_MS = 10_000;

function isRoot(t: TestContext): boolean {
  if (process.getuid?.() === 0) return true;
  t.skip('needs root: the point is what the root primary does not do');
  return false;
}

/** The processes holding the socket 127.0.0.1:localPort ⇄ 127.0.0.1:remotePort. */
async function ownersOf(localPort: number, remotePort: number): Promise<number[]> {
  return eventually(
    () => {
      const inode = loopbackSocketInode(localPort, remotePort);
      if (inode === undefined) return undefined;
      const owners = socketOwners(inode);
      return owners.length > 0 ? owners : undefined;
    },
    10_000,
    `the process holding 127.0.0.1:${localPort} ⇄ :${remotePort}`,
  );
}

/** Each owner is a child of unhitch's primary and runs as no uid 0 at all. */
function assertUnprivilegedChildren(owners: readonly number[], primary: UnhitchProcess): void {
  assert.equal(owners.length, 1, `one process holds the socket: ${owners.join(', ')}`);
  for (const pid of owners) {
    assert.notEqual(pid, primary.child.pid, 'not the primary');
    const { uids, ppid } = processIdentity(pid);
    assert.equal(ppid, primary.child.pid, 'a child of the primary');
    assert.ok(
      uids.length === 4 && uids.every((uid) => uid !== 0),
      `uids ${uids.join(' ')}: none of them root`,
    );
  }
}

async function connected(port: number): Promise<Socket> {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  return socket;
}

/** Resolves when the server ends or resets the connection; the bytes it sent first. */
function closedByServer(socket: Socket): Promise<string> {
  let received = '';
  socket.on('data', (chunk: Buffer) => {
    received += chunk.toString('latin1');
  });
  socket.on('error', () => {});
  return new Promise((resolve) => socket.once('close', () => resolve(received)));
}

/** One request and its whole response head on a kept-alive connection. */
async function askNotFound(socket: Socket): Promise<string> {
  const head = new Promise<string>((resolve) => {
    let received = '';
    const onData = (chunk: Buffer): void => {
      received += chunk.toString('latin1');
      if (/\r\n\r\n[\s\S]*not found\n/.test(received)) {
        socket.off('data', onData);
        resolve(received);
      }
    };
    socket.on('data', onData);
  });
  socket.write('GET /.well-known/acme-challenge/nothing HTTP/1.1\r\nHost: a.example.com\r\n\r\n');
  return head;
}

/**
 * Starts unhitch (one worker, a backend that hangs up) from a hitch.conf in `dir` that ends
 * with `services`, the lines that give the services process its work.
 */
async function startWithServices(t: TestContext, dir: string, services: string) {
  const backend = await startBackend((socket) => socket.end());
  t.after(() => closeBackend(backend));
  const config = join(dir, 'hitch.conf');
  writeFileSync(
    config,
    `frontend = "[127.0.0.1]:${await freePort()}"\nbackend = "[127.0.0.1]:${backend.port}"\n` +
      `workers = 1\npin-workers = off\n${services}`,
  );
  const unhitch = startUnhitch([`--config=${config}`]);
  t.after(() => unhitch.kill('SIGKILL'));
  return { unhitch, config };
}

async function startWithHttpChallenge(t: TestContext) {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-services-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const httpPort = await freePort();
  // The CA is never reached (nothing listens on port 1): the listener is what is tested.
  const { unhitch, config } = await startWithServices(
    t,
    dir,
    `acme = {\n  directory = "https://127.0.0.1:1/dir"\n  domain = "a.example.com"\n` +
      `  state-dir = "${join(dir, 'state')}"\n  challenge = "http-01"\n` +
      `  http-listen = "127.0.0.1:${httpPort}"\n  retry = 60\n}\n`,
  );
  await unhitch.waitForLog((line) => line.msg === 'http-01 challenge listener up', 20_000);
  return { unhitch, httpPort, config };
}

test('http-01 is accepted by an unprivileged child of the primary, never by root', async (t) => {
  if (!isRoot(t)) return;
  const { unhitch, httpPort } = await startWithHttpChallenge(t);
  const client = await connected(httpPort);
  t.after(() => client.destroy());
  assert.match(await askNotFound(client), /^HTTP\/1\.1 404/);
  // The server end of this live connection: 127.0.0.1:httpPort ⇄ the client's port.
  const owners = await ownersOf(httpPort, client.localPort as number);
  assertUnprivilegedChildren(owners, unhitch);
  const services = unhitch.lines.find((line) => line.msg === 'services process ready');
  assert.equal(services?.pid, owners[0], 'the services process');
  assert.notEqual(services?.uid, 0);
});

test('http-01: a silent or slow connection is closed after seconds, not minutes', async (t) => {
  if (!isRoot(t)) return;
  const { httpPort } = await startWithHttpChallenge(t);
  const silent = await connected(httpPort);
  const slow = await connected(httpPort);
  t.after(() => {
    silent.destroy();
    slow.destroy();
  });
  const started = Date.now();
  // Half a request head, then nothing (slowloris).
  slow.write('GET /.well-known/acme-challenge/x HTTP/1.1\r\nHost: a');
  await Promise.all([closedByServer(silent), closedByServer(slow)]);
  const tookMs = Date.now() - started;
  assert.ok(
    tookMs < HTTP_CHALLENGE_IDLE_TIMEOUT_MS + CLOSE_SLACK_MS,
    `closed after ${tookMs} ms (node's defaults held such a connection for a minute and more)`,
  );
});

test('http-01: connections beyond the cap are refused, the ones in service stay', async (t) => {
  if (!isRoot(t)) return;
  const { httpPort } = await startWithHttpChallenge(t);
  const held: Socket[] = [];
  t.after(() => {
    for (const socket of held) socket.destroy();
  });
  // Each answered once: accepted and counted by the server, then idle (kept alive).
  for (let index = 0; index < HTTP_CHALLENGE_MAX_CONNECTIONS; index++) {
    const socket = await connected(httpPort);
    held.push(socket);
    assert.match(await askNotFound(socket), /^HTTP\/1\.1 404/);
  }
  let heldClosed = 0;
  for (const socket of held) socket.once('close', () => heldClosed++);
  const extra = await connected(httpPort);
  t.after(() => extra.destroy());
  const extraClosed = closedByServer(extra);
  extra.write('GET /.well-known/acme-challenge/x HTTP/1.1\r\nHost: a.example.com\r\n\r\n');
  assert.equal(await extraClosed, '', 'closed without an answer');
  assert.equal(heldClosed, 0, 'the connections in service were not the ones closed');
  // Room again once they go.
  for (const socket of held) socket.destroy();
  const again = await eventually(
    async () => {
      const socket = await connected(httpPort);
      const answer = await Promise.race([askNotFound(socket), closedByServer(socket)]);
      socket.destroy();
      return /^HTTP\/1\.1 404/.test(answer) ? answer : undefined;
    },
    10_000,
    'an answer once the held connections are gone',
  );
  assert.match(again, /^HTTP\/1\.1 404/);
});

test('OCSP: the responder is asked by an unprivileged child of the primary, never by root', async (t) => {
  if (!isRoot(t)) return;
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-services-ocsp-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const askedBy: Array<Promise<number[]>> = [];
  // A responder that looks at who is asking while the request is live, then refuses.
  const responder = createServer((request, response) => {
    const { remotePort, localPort } = request.socket;
    const owners = ownersOf(remotePort as number, localPort as number);
    askedBy.push(owners);
    request.resume();
    // Answered only once the asker is known: then its socket is still open.
    request.on('end', () => {
      void owners.finally(() => {
        response.writeHead(500);
        response.end();
      });
    });
  });
  responder.listen(0, '127.0.0.1');
  await once(responder, 'listening');
  t.after(() => responder.close());
  const responderPort = (responder.address() as AddressInfo).port;
  const ca = makeCa('services-ocsp-ca');
  const site = issue(ca, 'services-ocsp', {
    dnsNames: ['ocsp.example.com'],
    extensions: [`authorityInfoAccess=OCSP;URI:http://127.0.0.1:${responderPort}/`],
  });
  const pem = join(dir, 'site.pem');
  writeFileSync(
    pem,
    readFileSync(site.keyPath, 'latin1') +
      readFileSync(site.certPath, 'latin1') +
      readFileSync(ca.certPath, 'latin1'),
    { mode: 0o600 },
  );
  const cacheDir = join(dir, 'ocsp');
  mkdirSync(cacheDir);
  const { unhitch } = await startWithServices(
    t,
    dir,
    `ocsp-dir = "${cacheDir}"\npem-file = "${pem}"\n`,
  );
  const failed = await unhitch.waitForLog(
    (line) => line.code === 'UNHITCH_OCSP_FETCH',
    20_000,
    'the refused fetch',
  );
  assert.match(String((failed.err as { message?: string })?.message), /HTTP 500/);
  assert.ok(askedBy.length >= 1, 'the responder was asked');
  assertUnprivilegedChildren(await (askedBy[0] as Promise<number[]>), unhitch);
  assert.equal(failed.role, 'services', 'logged by the services process');
});

test('ACME: the CA is asked by an unprivileged child of the primary, never by root', async (t) => {
  if (!isRoot(t)) return;
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-services-acme-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // A CA that looks at who is asking while the connection is live, then hangs up: the
  // order fails at its first request (the directory), retried a minute later.
  const askedBy: Array<Promise<number[]>> = [];
  const ca = createNetServer((socket) => {
    socket.on('error', () => {});
    const owners = ownersOf(socket.remotePort as number, socket.localPort as number);
    askedBy.push(owners);
    void owners.finally(() => socket.destroy());
  });
  ca.listen(0, '127.0.0.1');
  await once(ca, 'listening');
  t.after(() => ca.close());
  const caPort = (ca.address() as AddressInfo).port;
  const { unhitch } = await startWithServices(
    t,
    dir,
    `acme = {\n  directory = "https://127.0.0.1:${caPort}/dir"\n  domain = "a.example.com"\n` +
      `  state-dir = "${join(dir, 'state')}"\n  retry = 60\n}\n`,
  );
  const failed = await unhitch.waitForLog(
    (line) => line.code === 'UNHITCH_ACME_FAILED',
    30_000,
    'the failed order',
  );
  assert.equal(failed.reason, 'ca_unreachable');
  assert.ok(askedBy.length >= 1, 'the CA was asked');
  for (const owners of askedBy) assertUnprivilegedChildren(await owners, unhitch);
});

test('the services process killed: logged, restarted, the http-01 port served again by the new one', async (t) => {
  if (!isRoot(t)) return;
  const { unhitch, httpPort } = await startWithHttpChallenge(t);
  const first = unhitch.lines.find((line) => line.msg === 'services process ready');
  assert.ok(typeof first?.pid === 'number');
  process.kill(first.pid, 'SIGKILL');
  const died = await unhitch.waitForLog((line) => line.code === 'UNHITCH_SERVICES_DIED', 10_000);
  assert.equal(died.signal, 'SIGKILL');
  const [, again] = await unhitch.waitForLogs(
    (line) => line.msg === 'http-01 challenge listener up',
    2,
    20_000,
  );
  assert.ok(again);
  const client = await connected(httpPort);
  t.after(() => client.destroy());
  assert.match(await askNotFound(client), /^HTTP\/1\.1 404/);
  const owners = await ownersOf(httpPort, client.localPort as number);
  assertUnprivilegedChildren(owners, unhitch);
  assert.notEqual(owners[0], first.pid, 'a new services process');
  assert.equal(unhitch.child.exitCode, null, 'the primary kept running');
});

test('a reload that changes a log setting replaces the services process; one that does not keeps it', async (t) => {
  if (!isRoot(t)) return;
  const { unhitch, httpPort, config } = await startWithHttpChallenge(t);
  const ready = (line: { msg?: unknown }) => line.msg === 'services process ready';
  const [first] = await unhitch.waitForLogs(ready, 1);
  unhitch.kill('SIGHUP');
  await unhitch.waitForLogs((line) => line.msg === 'reloaded', 1, 20_000);
  writeFileSync(config, `log-level = "debug"\n${readFileSync(config, 'utf8')}`);
  unhitch.kill('SIGHUP');
  await unhitch.waitForLogs((line) => line.msg === 'reloaded', 2, 20_000);
  const [, second] = await unhitch.waitForLogs(ready, 2, 20_000);
  assert.equal(
    unhitch.lines.filter((line) => line.msg === 'services process replaced after a reload').length,
    1,
    'replaced once: for the log-level, not for the unchanged reload',
  );
  assert.notEqual(second?.pid, first?.pid);
  assert.equal(unhitch.lines.filter((line) => line.code === 'UNHITCH_SERVICES_DIED').length, 0);
  await unhitch.waitForLogs((line) => line.msg === 'http-01 challenge listener up', 2, 20_000);
  const client = await connected(httpPort);
  t.after(() => client.destroy());
  assert.match(await askNotFound(client), /^HTTP\/1\.1 404/);
});
