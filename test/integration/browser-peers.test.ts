/**
 * A real browser: Debian's headless Chromium (driven by puppeteer-core) loads a local page
 * with WebTorrent's browser bundle in two browser contexts; one seeds a file, the other
 * fetches it by magnet link through unhitch's wss:// (the test certificate trusted in
 * Chromium's NSS database, not ignored) and reports its SHA-256 to the test. The TLS
 * version and key-exchange group of the browser's wss:// connections come from
 * Chromium's net log. Runs inside a loopback-only network namespace.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import puppeteer, { type Page } from 'puppeteer-core';
import {
  insideLoopbackNamespace,
  nonLoopbackInterfaces,
  runInLoopbackNamespace,
  skipUnlessAvailable,
  toolMissing,
} from '../helpers/loopback-namespace.js';
import { startRecordingTracker } from '../helpers/webtorrent.js';
import { makeCertificate } from '../kit/pki.js';
import { ROOT, startSingleWorker } from '../kit/unhitch-process.js';

const CHROMIUM = '/usr/bin/chromium';
const FILE_BYTES = 2 * 1024 * 1024;
const BUNDLE = resolve(ROOT, 'node_modules/webtorrent/dist/webtorrent.min.js');

/** TLS named groups by IANA code point, as Chromium's net log gives them. */
const GROUP_NAMES: Record<number, string> = {
  23: 'P-256',
  24: 'P-384',
  29: 'X25519',
  4588: 'X25519MLKEM768',
};

/**
 * The group unhitch's default ecdh-curve lets Chromium (which offers X25519MLKEM768 first)
 * negotiate: the post-quantum hybrid where the server's OpenSSL has ML-KEM (3.5+).
 */
function expectedGroup(): string {
  const [major = 0, minor = 0] = process.versions.openssl.split('.').map(Number);
  return major > 3 || (major === 3 && minor >= 5) ? 'X25519MLKEM768' : 'X25519';
}

const PAGE = `<!doctype html><meta charset="utf-8"><title>unhitch browser peers</title>
<script type="module">
import WebTorrent from '/webtorrent.min.js';
const rtcConfig = { iceServers: [] };
window.seed = async (announce) => {
  const bytes = new Uint8Array(await (await fetch('/file.bin')).arrayBuffer());
  const client = new WebTorrent({ tracker: { rtcConfig } });
  return new Promise((resolve, reject) => {
    client.on('error', (e) => reject(String(e)));
    client.seed(new File([bytes], 'file.bin'), { announce: [announce] }, (t) => resolve(t.magnetURI));
  });
};
window.fetchByMagnet = async (magnet) => {
  const client = new WebTorrent({ tracker: { rtcConfig } });
  const torrent = await new Promise((resolve, reject) => {
    client.on('error', (e) => reject(String(e)));
    client.add(magnet, resolve);
  });
  await new Promise((resolve) => (torrent.done ? resolve() : torrent.once('done', resolve)));
  const digest = await crypto.subtle.digest('SHA-256', await torrent.files[0].arrayBuffer());
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
};
window.ready = true;
</script>`;

interface NetLogEvent {
  readonly type: number;
  readonly source: { readonly id: number };
  readonly params?: Record<string, unknown>;
}

interface TlsConnection {
  readonly version: string;
  readonly group: string;
}

/** Every TLS connection Chromium made to `hostPort` (address:port), from its net log. */
function tlsConnectionsTo(netLogPath: string, hostPort: string): TlsConnection[] {
  const log = JSON.parse(readFileSync(netLogPath, 'utf8')) as {
    constants: { logEventTypes: Record<string, number> };
    events: NetLogEvent[];
  };
  const type = log.constants.logEventTypes;
  const sources = new Set(
    log.events
      .filter((e) => e.type === type.TCP_CONNECT_ATTEMPT && e.params?.address === hostPort)
      .map((e) => e.source.id),
  );
  return log.events
    .filter((e) => e.type === type.SSL_CONNECT && sources.has(e.source.id) && e.params?.version)
    .map((e) => ({
      version: String(e.params?.version),
      group:
        GROUP_NAMES[Number(e.params?.key_exchange_group)] ?? String(e.params?.key_exchange_group),
    }));
}

/**
 * Says on stderr how far the run got: the outer test shows this output only when the run
 * fails, so a timeout names the step that was slow (a busy machine) or stuck.
 */
function progress(): (step: string) => void {
  const began = Date.now();
  return (step) => process.stderr.write(`browser-peers: ${step} at ${Date.now() - began} ms\n`);
}

if (insideLoopbackNamespace()) {
  // Typically 8-12 s; on two cores shared with another whole suite, over 60 s was seen.
  test('two Chromium peers move a file by magnet link through wss:// unhitch; TLS 1.3 with the expected group', {
    timeout: 100_000,
  }, async (t) => {
    const reached = progress();
    assert.deepEqual(nonLoopbackInterfaces(), [], 'only loopback in this namespace');
    const cert = makeCertificate('browser', ['localhost']);
    // A fresh NSS database under a fresh HOME: Chromium trusts exactly this certificate.
    const home = mkdtempSync(join(tmpdir(), 'unhitch-chromium-'));
    t.after(() => rmSync(home, { recursive: true, force: true }));
    const nssdb = `sql:${join(home, '.pki/nssdb')}`;
    mkdirSync(join(home, '.pki/nssdb'), { recursive: true });
    execFileSync('certutil', ['-N', '-d', nssdb, '--empty-password']);
    execFileSync('certutil', [
      '-A',
      '-d',
      nssdb,
      '-n',
      'unhitch-test',
      '-t',
      'C,,',
      '-i',
      cert.certPath,
    ]);

    const tracker = await startRecordingTracker();
    t.after(() => tracker.close());
    const { unhitch, port } = await startSingleWorker(tracker.port, cert.combinedPath);
    t.after(() => unhitch.kill('SIGKILL'));
    const announce = `wss://127.0.0.1:${port}/`;
    reached('unhitch and the tracker serve');

    const data = randomBytes(FILE_BYTES);
    const bundle = readFileSync(BUNDLE);
    const site = createServer((request, response) => {
      if (request.url === '/webtorrent.min.js') {
        response.writeHead(200, { 'content-type': 'text/javascript' }).end(bundle);
      } else if (request.url === '/file.bin') {
        response.writeHead(200, { 'content-type': 'application/octet-stream' }).end(data);
      } else {
        response.writeHead(200, { 'content-type': 'text/html' }).end(PAGE);
      }
    });
    await new Promise<void>((listening) => site.listen(0, '127.0.0.1', listening));
    t.after(() => site.close());
    const origin = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;

    const netLog = join(home, 'netlog.json');
    const browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      env: { ...process.env, HOME: home },
      args: [
        '--no-sandbox', // root in CI: Chromium's sandbox refuses to run as root
        '--allow-loopback-in-peer-connection',
        `--log-net-log=${netLog}`,
        '--net-log-capture-mode=Default',
      ],
    });
    reached('Chromium started');
    let browserOpen = true;
    t.after(async () => {
      if (browserOpen) await browser.close();
    });
    const pages: Page[] = [];
    for (let n = 0; n < 2; n++) {
      const context = await browser.createBrowserContext();
      // Without a media permission Chromium offers no usable ICE candidate on loopback.
      await context.overridePermissions(origin, ['camera', 'microphone']);
      const page = await context.newPage();
      await page.goto(`${origin}/`);
      await page.waitForFunction('window.ready === true');
      pages.push(page);
    }
    const [seeder, leecher] = pages as [Page, Page];
    reached('both pages ready');

    const started = Date.now();
    const magnet = (await seeder.evaluate(`window.seed(${JSON.stringify(announce)})`)) as string;
    assert.match(magnet, /^magnet:\?xt=urn:btih:[0-9a-f]{40}/);
    reached('seeding');
    const digest = (await leecher.evaluate(
      `window.fetchByMagnet(${JSON.stringify(magnet)})`,
    )) as string;
    t.diagnostic(`2 MiB browser to browser in ${Date.now() - started} ms`);
    reached('fetched');
    assert.equal(digest, createHash('sha256').update(data).digest('hex'), 'SHA-256 in the page');

    // The net log is complete once the browser has exited.
    await browser.close();
    browserOpen = false;
    const connections = tlsConnectionsTo(netLog, `127.0.0.1:${port}`);
    assert.ok(
      connections.length >= 2,
      `both pages reached unhitch (${connections.length} TLS connections)`,
    );
    for (const connection of connections) {
      assert.equal(connection.version, 'TLS 1.3');
      assert.equal(connection.group, expectedGroup());
    }
    const peers = new Set(tracker.started.map((entry) => entry.peerId));
    assert.equal(peers.size, 2, 'the tracker saw both browsers start');
  });
} else {
  test('WebTorrent in Chromium, inside a network namespace with only loopback', {
    timeout: 160_000,
  }, async (t) => {
    const missing =
      toolMissing(CHROMIUM, ['--version'], 'apt-get install chromium') ??
      toolMissing('sh', ['-c', 'command -v certutil'], 'apt-get install libnss3-tools');
    if (skipUnlessAvailable(t, missing)) return;
    await runInLoopbackNamespace(t, import.meta.url, 140_000);
  });
}
