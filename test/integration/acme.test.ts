/**
 * ACME against a real CA on loopback (Debian's pebble, validating for real through a DNS
 * that answers 127.0.0.1 for every name): first issuance over tls-alpn-01 answered by the
 * frontends, renewal over http-01 while WebSockets stay open, a CA outage (retry with
 * back-off, the last good certificate keeps serving), and acme-tls/1 refused for a name
 * with no open challenge.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { type ClientOptions, WebSocket, WebSocketServer } from 'ws';
import { requirePebble, startPebble } from '../helpers/pebble.js';
import { makeCertificate } from '../kit/pki.js';
import { freePort } from '../kit/ports.js';
import { connectClient } from '../kit/proxy-fixture.js';
import {
  asNonRootWorkers,
  CLI,
  startUnhitch,
  type UnhitchLogLine,
} from '../kit/unhitch-process.js';

const obtained = (line: UnhitchLogLine) => line.msg === 'certificate obtained';
const certificatesReloaded = (line: UnhitchLogLine) => line.msg === 'certificates reloaded';
const orderFailed = (line: UnhitchLogLine) => line.code === 'UNHITCH_ACME_FAILED';

/** A WebSocket echo backend (plain HTTP behind the TLS frontend). */
async function startEchoBackend(t: TestContext): Promise<number> {
  const server: Server = createServer();
  const wss = new WebSocketServer({ server });
  wss.on('connection', (socket) => socket.on('message', (data) => socket.send(data)));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    for (const client of wss.clients) client.terminate();
    wss.close();
    server.close();
  });
  return (server.address() as AddressInfo).port;
}

interface Served {
  readonly serial: string;
  readonly issuer: string;
  readonly names: string;
}

async function served(port: number, servername?: string): Promise<Served> {
  const socket = await connectClient(port, servername === undefined ? {} : { servername });
  const peer = socket.getPeerCertificate();
  socket.destroy();
  return {
    serial: peer.serialNumber,
    issuer: String(peer.issuer?.CN ?? ''),
    names: peer.subjectaltname ?? '',
  };
}

async function openWebSocket(port: number, servername: string): Promise<WebSocket> {
  // ws hands servername to tls.connect (its types leave it out).
  const options: ClientOptions & { servername: string } = {
    servername,
    rejectUnauthorized: false,
  };
  const socket = new WebSocket(`wss://127.0.0.1:${port}/`, options);
  await once(socket, 'open');
  return socket;
}

async function echo(socket: WebSocket, text: string): Promise<string> {
  const reply = once(socket, 'message');
  socket.send(text);
  const [data] = (await reply) as [Buffer];
  return data.toString();
}

interface Setup {
  readonly dir: string;
  readonly tlsPort: number;
  readonly httpPort: number;
  readonly backendPort: number;
}

async function setup(t: TestContext): Promise<Setup> {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-acme-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return {
    dir,
    tlsPort: await freePort(),
    httpPort: await freePort(),
    backendPort: await startEchoBackend(t),
  };
}

interface StartWithCa {
  readonly validitySec?: number;
  /** Top-level options before the acme block. */
  readonly extra?: string;
  /** More lines inside the acme block. */
  readonly blockTail?: (s: Setup) => string;
  /** Runs with the config written, before unhitch starts. */
  readonly beforeStart?: (configPath: string) => void;
}

/** Pebble, then unhitch (2 workers) trusting it, with an acme block for a/b.example.com. */
async function startWithCa(t: TestContext, options: StartWithCa) {
  const s = await setup(t);
  const pebble = await startPebble(t, {
    tlsPort: s.tlsPort,
    httpPort: s.httpPort,
    ...(options.validitySec === undefined ? {} : { validitySec: options.validitySec }),
  });
  const config = writeConfig(s, pebble.directoryUrl, options.extra ?? '');
  writeFileSync(config, `${options.blockTail?.(s) ?? ''}}\n`, { flag: 'a' });
  options.beforeStart?.(config);
  const unhitch = startUnhitch([`--config=${config}`], {
    env: { NODE_EXTRA_CA_CERTS: pebble.httpsCaPath },
  });
  t.after(() => unhitch.kill('SIGKILL'));
  return { s, pebble, unhitch, config };
}

function writeConfig(s: Setup, directoryUrl: string, extra: string): string {
  const path = join(s.dir, 'hitch.conf');
  writeFileSync(
    path,
    `frontend = "[127.0.0.1]:${s.tlsPort}"\nbackend = "[127.0.0.1]:${s.backendPort}"\n` +
      `workers = 2\npin-workers = off\n${extra}` +
      `acme = {\n  directory = "${directoryUrl}"\n  contact = "mailto:ops@example.com"\n` +
      `  domain = "a.example.com"\n  domain = "b.example.com"\n  state-dir = "${join(s.dir, 'state')}"\n` +
      '  retry = 1\n',
  );
  return path;
}

test('first issuance over tls-alpn-01: served beside a pem-file under SNI, stored 0600, metric per certificate; acme-tls/1 refused outside a challenge', async (t) => {
  if (!requirePebble(t)) return;
  const pem = makeCertificate('acme-beside', ['pem.example.com']);
  const metricsPort = await freePort();
  const { s, unhitch, config } = await startWithCa(t, {
    extra: `pem-file = "${pem.combinedPath}"\nmetrics = "127.0.0.1:${metricsPort}"\n`,
  });
  const [line] = await unhitch.waitForLogs(obtained, 1, 20_000);
  await unhitch.waitForLogs(certificatesReloaded, 1);

  const acme = await served(s.tlsPort, 'a.example.com');
  assert.match(acme.issuer, /Pebble/i, 'the CA issued it');
  assert.match(acme.names, /DNS:a\.example\.com/);
  assert.match(acme.names, /DNS:b\.example\.com/);
  assert.equal((await served(s.tlsPort, 'b.example.com')).serial, acme.serial);
  // Hitch's rules: the pem-file stays the default, SNI picks either.
  assert.match((await served(s.tlsPort, 'pem.example.com')).names, /pem\.example\.com/);
  assert.match((await served(s.tlsPort)).names, /pem\.example\.com/, 'no SNI: the pem-file');

  const stored = join(s.dir, 'state', 'a.example.com.pem');
  assert.equal(line?.path, stored);
  assert.equal(statSync(stored).mode & 0o777, 0o600);
  assert.equal(statSync(join(s.dir, 'state', 'account.key')).mode & 0o777, 0o600);
  assert.equal(statSync(join(s.dir, 'state')).mode & 0o777, 0o700);

  const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const expiry = metrics
    .split('\n')
    .filter((text) => text.startsWith('unhitch_certificate_expiry_seconds{'));
  assert.equal(expiry.length, 2, metrics);
  assert.ok(
    expiry.some((text) => text.includes('name="a.example.com"') && text.includes(stored)),
    expiry.join('\n'),
  );
  assert.ok(expiry.some((text) => text.includes('name="pem.example.com"')));
  const notAfter = Number(
    expiry
      .find((text) => text.includes(stored))
      ?.split(' ')
      .pop(),
  );
  assert.ok(notAfter > Date.now() / 1000, `${notAfter} is in the future`);

  // acme-tls/1 with no open challenge, and for a name the acme block does not list.
  for (const servername of ['a.example.com', 'evil.example.com']) {
    await assert.rejects(
      connectClient(s.tlsPort, { servername, ALPNProtocols: ['acme-tls/1'] }),
      /no application protocol|alert number 120/i,
    );
  }
  const refusedFor = (name: string) => (entry: UnhitchLogLine) =>
    entry.reason === 'acme_challenge_refused' &&
    String((entry.err as { message?: string } | undefined)?.message).includes(`"${name}"`);
  await unhitch.waitForLog(refusedFor('evil.example.com'));
  await unhitch.waitForLog(refusedFor('a.example.com'));
  // Every worker confirmed the challenge before the CA looked: the first order succeeded.
  assert.deepEqual(
    unhitch.lines.filter((entry) => orderFailed(entry) || entry.level === 40),
    [],
    'no failed order, no warning',
  );

  // SIGHUP with a name added: the stored certificate no longer covers the block, so a new
  // one is ordered at once and served.
  writeFileSync(
    config,
    readFileSync(config, 'utf8').replace(
      '  domain = "b.example.com"\n',
      '  domain = "b.example.com"\n  domain = "c.example.com"\n',
    ),
  );
  unhitch.kill('SIGHUP');
  await unhitch.waitForLogs(obtained, 2, 20_000);
  await unhitch.waitForLogs(certificatesReloaded, 2);
  const widened = await served(s.tlsPort, 'c.example.com');
  assert.match(widened.issuer, /Pebble/i);
  assert.match(widened.names, /DNS:c\.example\.com/);
});

test('renewal over http-01 at two thirds of the lifetime: open WebSockets stay up, new connections get the new certificate', async (t) => {
  if (!requirePebble(t)) return;
  const { s, unhitch } = await startWithCa(t, {
    validitySec: 9,
    blockTail: (setup) =>
      `  challenge = "http-01"\n  http-listen = "127.0.0.1:${setup.httpPort}"\n`,
    // No pem-file and nothing stored yet: --test passes on a self-signed placeholder.
    beforeStart: (config) => {
      const check = spawnSync(
        process.execPath,
        [CLI, ...asNonRootWorkers(['--test', `--config=${config}`])],
        {
          encoding: 'utf8',
        },
      );
      assert.equal(check.status, 0, check.stderr);
      assert.match(`${check.stdout}${check.stderr}`, /1 certificate\(s\)/);
    },
  });
  await unhitch.waitForLogs(certificatesReloaded, 1, 20_000);
  const first = await served(s.tlsPort, 'a.example.com');
  assert.match(first.issuer, /Pebble/i);
  const sockets = [
    await openWebSocket(s.tlsPort, 'a.example.com'),
    await openWebSocket(s.tlsPort, 'b.example.com'),
  ];
  t.after(() => {
    for (const socket of sockets) socket.terminate();
  });
  let closed = 0;
  for (const socket of sockets) socket.once('close', () => closed++);

  // 9 s lifetime: renewal 5.7–6 s after notBefore, then a certificate reload.
  const [, renewed] = await unhitch.waitForLogs(obtained, 2, 20_000);
  await unhitch.waitForLogs(certificatesReloaded, 2);
  assert.ok(renewed);
  const second = await served(s.tlsPort, 'a.example.com');
  assert.notEqual(second.serial, first.serial, 'new connections get the renewed certificate');
  assert.equal(closed, 0, 'no WebSocket closed');
  assert.equal(await echo(sockets[0] as WebSocket, 'still here'), 'still here');
  assert.equal(await echo(sockets[1] as WebSocket, 'me too'), 'me too');
});

test('CA down: the order fails loudly, is retried with back-off, the last good certificate keeps serving; back up, it renews', async (t) => {
  if (!requirePebble(t)) return;
  const { s, pebble, unhitch } = await startWithCa(t, { validitySec: 9 });
  await unhitch.waitForLogs(certificatesReloaded, 1, 20_000);
  const good = await served(s.tlsPort, 'a.example.com');
  assert.match(good.issuer, /Pebble/i);

  await pebble.stop();
  const failures = await unhitch.waitForLogs(orderFailed, 2, 20_000);
  assert.deepEqual(
    failures.map((line) => line.retryInSec),
    [1, 2],
    'the back-off doubles',
  );
  assert.match(String((failures[0]?.err as { message?: string })?.message), /ECONNREFUSED/);
  assert.equal(failures[0]?.reason, 'ca_unreachable');
  assert.equal((await served(s.tlsPort, 'a.example.com')).serial, good.serial, 'still serving');

  await pebble.start();
  await unhitch.waitForLogs(certificatesReloaded, 2, 20_000);
  assert.notEqual((await served(s.tlsPort, 'a.example.com')).serial, good.serial);
});

test('an unusable state-dir is UNHITCH_ACME_STORE, retried; the frontends keep serving (placeholder)', async (t) => {
  const s = await setup(t);
  // A regular file where the state directory's parent should be: ENOTDIR, also as root.
  const blocker = join(s.dir, 'not-a-directory');
  writeFileSync(blocker, '');
  const config = join(s.dir, 'hitch.conf');
  writeFileSync(
    config,
    `frontend = "[127.0.0.1]:${s.tlsPort}"\nbackend = "[127.0.0.1]:${s.backendPort}"\n` +
      'workers = 1\npin-workers = off\n' +
      // The CA is never reached: the account key cannot be read or made first.
      `acme = {\n  directory = "https://127.0.0.1:1/dir"\n  domain = "a.example.com"\n` +
      `  state-dir = "${join(blocker, 'acme')}"\n  retry = 1\n}\n`,
  );
  const unhitch = startUnhitch([`--config=${config}`]);
  t.after(() => unhitch.kill('SIGKILL'));
  const failures = await unhitch.waitForLogs((line) => line.code === 'UNHITCH_ACME_STORE', 2);
  assert.match(String((failures[0]?.err as { message?: string })?.message), /ENOTDIR/);
  assert.equal(failures[0]?.reason, 'state_dir');
  assert.deepEqual(
    failures.map((line) => line.retryInSec),
    [1, 2],
  );
  const placeholder = await served(s.tlsPort, 'a.example.com');
  assert.match(placeholder.names, /DNS:a\.example\.com/);
  assert.doesNotMatch(placeholder.issuer, /Pebble/i);
});

test('a challenge the CA cannot validate: UNHITCH_ACME_FAILED with reason challenge_failed, retried', async (t) => {
  if (!requirePebble(t)) return;
  const s = await setup(t);
  // Pebble dials a port where nothing listens, so tls-alpn-01 cannot succeed.
  const pebble = await startPebble(t, { tlsPort: await freePort(), httpPort: s.httpPort });
  const config = writeConfig(s, pebble.directoryUrl, '');
  writeFileSync(config, '}\n', { flag: 'a' });
  const unhitch = startUnhitch([`--config=${config}`], {
    env: { NODE_EXTRA_CA_CERTS: pebble.httpsCaPath },
  });
  t.after(() => unhitch.kill('SIGKILL'));
  const failures = await unhitch.waitForLogs(orderFailed, 2, 20_000);
  assert.deepEqual(
    failures.map((line) => [line.reason, line.retryInSec]),
    [
      ['challenge_failed', 1],
      ['challenge_failed', 2],
    ],
    JSON.stringify(failures[0]?.err),
  );
  assert.equal(unhitch.lines.filter(obtained).length, 0);
});
