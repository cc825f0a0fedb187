/**
 * Real peers: two WebTorrent clients (the `webtorrent` package; WebRTC from
 * node-datachannel, whose binary ships in an npm package) in two processes find each other
 * through bittorrent-tracker behind the unhitch binary over wss://, by magnet link, and
 * move a 5 MiB file over a WebRTC data channel. Runs inside a loopback-only network
 * namespace (see helpers/loopback-namespace.ts).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import type { Torrent } from 'webtorrent';
import {
  insideLoopbackNamespace,
  nonLoopbackInterfaces,
  runInLoopbackNamespace,
} from '../helpers/loopback-namespace.js';
import { startRecordingTracker } from '../helpers/webtorrent.js';
import { destroyClient, trustCertificate, webTorrentClient } from '../helpers/webtorrent-node.js';
import { makeCertificate } from '../kit/pki.js';
import { startSingleWorker } from '../kit/unhitch-process.js';

const FILE_BYTES = 5 * 1024 * 1024;
const SEEDER = resolve(import.meta.dirname, '../fixtures/webtorrent-seeder.js');

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

if (insideLoopbackNamespace()) {
  test('two WebTorrent clients move 5 MiB by magnet link through wss:// unhitch to bittorrent-tracker', {
    timeout: 90_000,
  }, async (t) => {
    assert.deepEqual(nonLoopbackInterfaces(), [], 'only loopback in this namespace');
    const cert = makeCertificate('peers', ['localhost']);
    trustCertificate(cert.certPath);
    // Peers re-announce every 20 s (a fifth of the interval), not after the default 2 min:
    // a first offer lost on a loaded machine is replaced within the test's time. Not much
    // sooner: a re-announce drops the offers still pending, and simple-peer waits 5 s for
    // ICE gathering on each side, so an exchange takes about 10 s.
    const tracker = await startRecordingTracker({ intervalMs: 100_000 });
    t.after(() => tracker.close());
    const { unhitch, port } = await startSingleWorker(tracker.port, cert.combinedPath);
    t.after(() => unhitch.kill('SIGKILL'));
    const announceUrl = `wss://127.0.0.1:${port}/`;
    const storage = mkdtempSync(join(tmpdir(), 'unhitch-peers-'));
    t.after(() => rmSync(storage, { recursive: true, force: true }));

    const data = randomBytes(FILE_BYTES);
    const source = join(storage, 'five-mib.bin');
    writeFileSync(source, data);
    const seeder = spawn(
      process.execPath,
      [SEEDER, source, announceUrl, cert.certPath, join(storage, 'seed')],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    t.after(() => seeder.kill('SIGKILL'));
    const [line] = (await Promise.race([
      once(createInterface({ input: seeder.stdout }), 'line'),
      once(seeder, 'exit').then(([code]) => {
        throw new Error(`the seeder exited (${code}) before seeding`);
      }),
    ])) as [string];
    const { magnetURI } = JSON.parse(line) as { magnetURI: string };
    assert.match(magnetURI, /^magnet:\?xt=urn:btih:[0-9a-f]{40}.*&tr=wss%3A%2F%2F127\.0\.0\.1/);

    const leecher = webTorrentClient();
    t.after(() => destroyClient(leecher));
    const warnings: string[] = [];
    const started = Date.now();
    const downloaded = await new Promise<Torrent>((resolveTorrent, reject) => {
      leecher.once('error', reject);
      const torrent = leecher.add(magnetURI, { path: join(storage, 'leech') });
      torrent.on('warning', (warning: Error) => warnings.push(warning.message));
      torrent.once('error', reject);
      torrent.once('done', () => resolveTorrent(torrent));
    });
    t.diagnostic(`5 MiB by magnet link in ${Date.now() - started} ms`);

    const [file] = downloaded.files;
    assert.ok(file, 'the torrent has its file');
    assert.equal(file.name, 'five-mib.bin');
    // What the leecher wrote to its store (webtorrent's file.arrayBuffer() can stall).
    const received = readFileSync(join(storage, 'leech', file.name));
    assert.equal(received.length, FILE_BYTES);
    assert.equal(sha256(received), sha256(data), 'SHA-256 of the received file');
    assert.deepEqual(warnings, [], 'no tracker warning');
    // Both peers announced to the tracker, through unhitch: it is the only way in.
    const peers = new Set(tracker.started.map((announce) => announce.peerId));
    assert.equal(peers.size, 2, 'the tracker saw both peers start');
  });
} else {
  test('WebTorrent peers, inside a network namespace with only loopback', {
    timeout: 120_000,
  }, async (t) => {
    await runInLoopbackNamespace(t, import.meta.url, 100_000);
  });
}
