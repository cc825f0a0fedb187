/**
 * Hitch's pem-dir and pem-dir-glob through the real binary: every matching file loaded,
 * SNI over all of them, the default chosen as Hitch chooses it, and SIGHUP picking up
 * files added, changed and removed.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { makeCertificate } from '../kit/pki.js';
import { freePort } from '../kit/ports.js';
import { closeBackend, connectClient, startBackend } from '../kit/proxy-fixture.js';
import { startUnhitch, type UnhitchLogLine } from '../kit/unhitch-process.js';

const isReady = (line: UnhitchLogLine) => line.msg === 'worker ready';

const alpha = makeCertificate('dir-alpha', ['alpha.example.com']);
const beta = makeCertificate('dir-beta', ['beta.example.com']);
const gamma = makeCertificate('dir-gamma', ['gamma.example.com']);
const fallback = makeCertificate('dir-fallback', ['fallback.example.com']);

async function servedName(port: number, servername?: string): Promise<string> {
  const client = await connectClient(port, servername === undefined ? {} : { servername });
  const name = String(client.getPeerCertificate().subject?.CN ?? '');
  client.destroy();
  return name;
}

test('pem-dir: every file matching pem-dir-glob, SNI over all, first file as default, SIGHUP re-reads', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-pemdir-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const certs = join(dir, 'cert.d');
  mkdirSync(certs);
  // Lexicographic order decides the default: b-beta comes before c-gamma.
  copyFileSync(beta.combinedPath, join(certs, 'b-beta.pem'));
  copyFileSync(gamma.combinedPath, join(certs, 'c-gamma.pem'));
  copyFileSync(alpha.combinedPath, join(certs, 'alpha.key-and-cert')); // not *.pem
  copyFileSync(alpha.combinedPath, join(certs, '.hidden.pem'));
  mkdirSync(join(certs, 'sub.pem'));
  const backend = await startBackend(() => {});
  t.after(() => closeBackend(backend));
  const port = await freePort();
  const configPath = join(dir, 'hitch.conf');
  writeFileSync(
    configPath,
    `frontend = "[127.0.0.1]:${port}"\nbackend = "[127.0.0.1]:${backend.port}"\nworkers = 1\n` +
      `pem-dir = "${certs}"\npem-dir-glob = "*.pem"\n`,
  );
  const unhitch = startUnhitch([`--config=${configPath}`]);
  t.after(() => unhitch.kill('SIGKILL'));
  await unhitch.waitForLogs(isReady, 1);

  assert.equal(await servedName(port, 'beta.example.com'), 'beta.example.com');
  assert.equal(await servedName(port, 'gamma.example.com'), 'gamma.example.com');
  assert.equal(await servedName(port, 'alpha.example.com'), 'beta.example.com', 'glob left it out');
  assert.equal(await servedName(port), 'beta.example.com', 'no pem-file: the first file');

  // Added (a-alpha, now first), changed (c-gamma holds fallback's certificate), removed (b-beta).
  copyFileSync(alpha.combinedPath, join(certs, 'a-alpha.pem'));
  copyFileSync(fallback.combinedPath, join(certs, 'c-gamma.pem'));
  unlinkSync(join(certs, 'b-beta.pem'));
  unhitch.kill('SIGHUP');
  await unhitch.waitForLogs((line) => line.msg === 'reloaded', 1);
  assert.equal(await servedName(port, 'alpha.example.com'), 'alpha.example.com');
  assert.equal(await servedName(port, 'fallback.example.com'), 'fallback.example.com');
  assert.equal(await servedName(port, 'gamma.example.com'), 'alpha.example.com', 'changed file');
  assert.equal(await servedName(port, 'beta.example.com'), 'alpha.example.com', 'removed file');
  assert.equal(await servedName(port), 'alpha.example.com', 'the new first file');

  // A pem-file is the default, ahead of the directory's files.
  writeFileSync(configPath, `pem-file = "${beta.combinedPath}"\n`, { flag: 'a' });
  unhitch.kill('SIGHUP');
  await unhitch.waitForLogs((line) => line.msg === 'reloaded', 2);
  assert.equal(await servedName(port), 'beta.example.com');
  assert.equal(await servedName(port, 'alpha.example.com'), 'alpha.example.com');

  // A file that is not a certificate makes the reload fail; the running set stays.
  writeFileSync(join(certs, 'broken.pem'), 'not a certificate\n');
  unhitch.kill('SIGHUP');
  await unhitch.waitForLog(
    (line) => line.msg === 'reload rejected; the running configuration stays',
  );
  assert.equal(await servedName(port, 'alpha.example.com'), 'alpha.example.com');
});

test('pem-dir: --test reads the directory; an empty or missing one is an error', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-pemdir-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const configPath = join(dir, 'hitch.conf');
  const run = async (text: string) => {
    writeFileSync(configPath, text);
    const unhitch = startUnhitch([`--config=${configPath}`, '--test']);
    const code = await unhitch.exited();
    return {
      code,
      output: unhitch.text() + unhitch.lines.map((l) => JSON.stringify(l)).join('\n'),
    };
  };
  const empty = await run(
    `frontend = "[127.0.0.1]:1"\npem-dir = "${dir}"\npem-dir-glob = "*.pem"\n`,
  );
  assert.equal(empty.code, 1, empty.output);
  assert.match(empty.output, /has no file to load|no pem-file configured/);
  const missing = await run(`frontend = "[127.0.0.1]:1"\npem-dir = "${join(dir, 'nope')}"\n`);
  assert.equal(missing.code, 1, missing.output);
  assert.match(missing.output, /pem-dir cannot be read: ENOENT/);
  copyFileSync(alpha.combinedPath, join(dir, 'alpha.pem'));
  const good = await run(
    `frontend = "[127.0.0.1]:1"\npem-dir = "${dir}"\npem-dir-glob = "*.pem"\n`,
  );
  assert.equal(good.code, 0, good.output);
});

test('a name in two pem-files: the one loaded last serves it (own before global), with a warning', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-sni-dup-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const older = makeCertificate('dup-older', ['dup.example.com', 'older.example.com']);
  const newer = makeCertificate('dup-newer', ['dup.example.com', 'newer.example.com']);
  const own = makeCertificate('dup-own', ['dup.example.com', 'own.example.com']);
  const backend = await startBackend(() => {});
  t.after(() => closeBackend(backend));
  const [globalPort, ownPort] = [await freePort(), await freePort()];
  const configPath = join(dir, 'hitch.conf');
  writeFileSync(
    configPath,
    `backend = "[127.0.0.1]:${backend.port}"\nworkers = 1\n` +
      `pem-file = "${older.combinedPath}"\npem-file = "${newer.combinedPath}"\n` +
      `pem-file = "${fallback.combinedPath}"\nfrontend = "[127.0.0.1]:${globalPort}"\n` +
      `frontend = {\n  host = "127.0.0.1"\n  port = "${ownPort}"\n  match-global-certs = on\n` +
      `  pem-file = "${own.combinedPath}"\n}\n`,
  );
  const unhitch = startUnhitch([`--config=${configPath}`]);
  t.after(() => unhitch.kill('SIGKILL'));
  await unhitch.waitForLogs(isReady, 1);
  const fingerprint = async (port: number, servername: string) => {
    const client = await connectClient(port, { servername });
    const value = client.getPeerCertificate().fingerprint256;
    client.destroy();
    return value;
  };
  const fingerprintOf = (cert: { cert: Buffer }) => new X509Certificate(cert.cert).fingerprint256;
  assert.equal(await fingerprint(globalPort, 'dup.example.com'), fingerprintOf(newer));
  assert.equal(await fingerprint(ownPort, 'dup.example.com'), fingerprintOf(own));
  assert.equal(await fingerprint(ownPort, 'older.example.com'), fingerprintOf(older));
  assert.ok(
    unhitch.lines.some((line) =>
      String(line.msg).includes(
        `SNI name 'dup.example.com' from '${older.combinedPath}' overridden by '${newer.combinedPath}'`,
      ),
    ),
    JSON.stringify(unhitch.lines),
  );
});
