/**
 * OCSP stapling through the real binary: responses fetched from the certificate's AIA
 * responder (`openssl ocsp` answering on 127.0.0.1, a throwaway CA made here), cached in
 * ocsp-dir, verified against SSL_CERT_FILE and stapled (`openssl s_client -status`); a
 * revoked certificate's staple says so; a dead responder gives no staple, no crash, a
 * log line and retries with back-off; a static ocsp-resp-file is stapled and checked.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadPemFile } from '../../src/tls/material.js';
import { ocspCacheFileName } from '../../src/tls/ocsp.js';
import { OcspFetcher, ocspDirCache } from '../../src/tls/ocsp-fetcher.js';
import {
  answerOcspRequest,
  indexLine,
  issue,
  makeCa,
  sClient,
  startOcspResponder,
} from '../kit/pki.js';
import { freePort } from '../kit/ports.js';
import { closeBackend, startBackend, waitFor } from '../kit/proxy-fixture.js';
import { startUnhitch } from '../kit/unhitch-process.js';

const ca = makeCa('ocsp-ca');

/** Key, certificate and issuer in one pem-file, as Hitch needs it for OCSP. */
function withChain(
  dir: string,
  stem: string,
  issued: { keyPath: string; certPath: string },
): string {
  const path = join(dir, `${stem}.pem`);
  writeFileSync(
    path,
    readFileSync(issued.keyPath, 'latin1') +
      readFileSync(issued.certPath, 'latin1') +
      readFileSync(ca.certPath, 'latin1'),
    { mode: 0o600 },
  );
  return path;
}

test('ocsp-dir: fetched, verified, cached and stapled; revoked says revoked; a dead responder is retried', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-ocsp-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // As root the workers are nobody and read ocsp-dir themselves (as Hitch's do).
  chmodSync(dir, 0o755);
  const indexPath = join(dir, 'index.txt');
  writeFileSync(indexPath, '');
  const responder = await startOcspResponder(ca, indexPath);
  t.after(() => responder.close());
  const deadPort = await freePort();
  const aia = (url: string) => [`authorityInfoAccess=OCSP;URI:${url}`];
  const good = issue(ca, 'ocsp-good', {
    dnsNames: ['good.example.com'],
    extensions: aia(responder.url),
  });
  const revoked = issue(ca, 'ocsp-revoked', {
    dnsNames: ['revoked.example.com'],
    extensions: aia(responder.url),
  });
  const dead = issue(ca, 'ocsp-dead', {
    dnsNames: ['dead.example.com'],
    extensions: aia(`http://127.0.0.1:${deadPort}/`),
  });
  writeFileSync(indexPath, indexLine(good.certPath, false) + indexLine(revoked.certPath, true));
  const cacheDir = join(dir, 'ocsp');
  mkdirSync(cacheDir);
  const goodPem = withChain(dir, 'good', good);
  const backend = await startBackend((socket) => socket.end('hello from backend\n'));
  t.after(() => closeBackend(backend));
  const port = await freePort();
  const configPath = join(dir, 'hitch.conf');
  writeFileSync(
    configPath,
    [
      `frontend = "[127.0.0.1]:${port}"`,
      `backend = "[127.0.0.1]:${backend.port}"`,
      'workers = 1',
      `ocsp-dir = "${cacheDir}"`,
      'ocsp-verify-staple = on',
      `pem-file = "${withChain(dir, 'revoked', revoked)}"`,
      `pem-file = "${withChain(dir, 'dead', dead)}"`,
      `pem-file = "${goodPem}"`,
      '',
    ].join('\n'),
  );
  // The CA store the staples are verified against, for the child only.
  const previous = process.env.SSL_CERT_FILE;
  process.env.SSL_CERT_FILE = ca.certPath;
  const unhitch = startUnhitch([`--config=${configPath}`]);
  if (previous === undefined) delete process.env.SSL_CERT_FILE;
  else process.env.SSL_CERT_FILE = previous;
  t.after(() => unhitch.kill('SIGKILL'));
  await unhitch.waitForLog((line) => line.msg === 'worker ready');

  const fetched = await unhitch.waitForLog(
    (line) => line.msg === 'OCSP response fetched',
    15_000,
    'good fetch',
  );
  // The responder's nextUpdate is 60 minutes out (-nmin 60): the next fetch comes 10
  // minutes before it, as Hitch schedules it.
  assert.ok(
    Math.abs(Number(fetched.refreshInSec) - 50 * 60) <= 10,
    `refresh in ${fetched.refreshInSec} s`,
  );
  const revokedLine = await unhitch.waitForLog(
    (line) => line.msg === 'OCSP: certificate status revoked',
    15_000,
    'revoked fetch',
  );
  assert.equal(revokedLine.cert, join(dir, 'revoked.pem'));
  const failed = await unhitch.waitForLog(
    (line) => line.code === 'UNHITCH_OCSP_FETCH',
    15_000,
    'the dead responder',
  );
  assert.equal(failed.retryInSec, 60, "Hitch's first retry delay");
  assert.equal(failed.attempt, 1);
  // Workers pick the cached files up as the primary writes them.
  await unhitch.waitForLogs((line) => line.msg === 'OCSP staple loaded', 2, 15_000);
  assert.equal(readdirSync(cacheDir).length, 2, 'one cached response per reachable certificate');

  const status = async (name: string) =>
    (await sClient(port, ['-status', '-servername', name])).output;
  const goodStatus = await status('good.example.com');
  assert.match(goodStatus, /OCSP Response Status: successful/, goodStatus);
  assert.match(goodStatus, /Cert Status: good/, goodStatus);
  const revokedStatus = await status('revoked.example.com');
  assert.match(revokedStatus, /Cert Status: revoked/, revokedStatus);
  const deadStatus = await status('dead.example.com');
  assert.match(deadStatus, /OCSP response: no response sent/, deadStatus);
  assert.match(deadStatus, /hello from backend/, 'served without a staple');
  assert.equal(unhitch.child.exitCode, null, 'still running');

  // The cached good response works as a static ocsp-resp-file, with ocsp-dir off.
  const staticPath = join(dir, 'good.ocsp');
  // Hitch's cache name: md5 of the pem-file path.
  const goodCache = join(cacheDir, ocspCacheFileName(goodPem));
  copyFileSync(goodCache, staticPath);
  const staticPort = await freePort();
  const staticConfig = join(dir, 'static.conf');
  writeFileSync(
    staticConfig,
    `frontend = "[127.0.0.1]:${staticPort}"\nbackend = "[127.0.0.1]:${backend.port}"\nworkers = 1\n` +
      `ocsp-dir = ""\npem-file = {\n  cert = "${goodPem}"\n  ocsp-resp-file = "${staticPath}"\n}\n`,
  );
  const staticProxy = startUnhitch([`--config=${staticConfig}`]);
  t.after(() => staticProxy.kill('SIGKILL'));
  await staticProxy.waitForLog((line) => line.msg === 'worker ready');
  const staticStatus = (await sClient(staticPort, ['-status', '-servername', 'good.example.com']))
    .output;
  assert.match(staticStatus, /Cert Status: good/, staticStatus);

  // A response for another certificate is refused at start (--test says so too).
  writeFileSync(
    staticConfig,
    `frontend = "[127.0.0.1]:${staticPort}"\nocsp-dir = ""\n` +
      `pem-file = {\n  cert = "${withChain(dir, 'revoked2', revoked)}"\n  ocsp-resp-file = "${staticPath}"\n}\n`,
  );
  const check = startUnhitch([`--config=${staticConfig}`, '--test']);
  assert.equal(await check.exited(), 1);
  assert.match(
    check.text() + JSON.stringify(check.lines),
    /OCSP response has no answer for this certificate/,
  );
});

/**
 * Runs the binary to its exit (`--test`) or to its first listening worker (a start,
 * then stopped) with SSL_CERT_FILE set: exit code 0 for a start that listened.
 */
async function runWithCaFile(
  args: readonly string[],
  caFile: string,
): Promise<{ code: number | null; output: string }> {
  const unhitch = startUnhitch(args, { env: { SSL_CERT_FILE: caFile } });
  const starting = !args.includes('--test');
  const listened = starting
    ? await unhitch
        .waitForLog((line) => line.msg === 'worker ready', 20_000)
        .then(() => true)
        .catch(() => false)
    : false;
  if (listened) unhitch.kill('SIGTERM');
  const code = await unhitch.exited();
  return {
    code: listened ? 0 : code,
    output: unhitch.text() + JSON.stringify(unhitch.lines),
  };
}

test('ocsp-verify-staple with an ocsp-resp-file: --test and start fail unless the CA store verifies it (Hitch test14-ocsp-vfy)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-ocsp-vfy-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const site = issue(ca, 'ocsp-vfy-site', { dnsNames: ['site.example.com'] });
  // A good response for the site, signed by the CA, made offline by `openssl ocsp`.
  const index = join(dir, 'index.txt');
  writeFileSync(index, indexLine(site.certPath, false));
  const request = join(dir, 'request.der');
  const response = join(dir, 'site.ocsp');
  execFileSync('openssl', [
    'ocsp',
    '-issuer',
    ca.certPath,
    '-cert',
    site.certPath,
    '-no_nonce',
    '-reqout',
    request,
  ]);
  answerOcspRequest(ca, index, request, response);
  const port = await freePort();
  const configPath = join(dir, 'hitch.conf');
  writeFileSync(
    configPath,
    `frontend = "[127.0.0.1]:${port}"\nbackend = "[127.0.0.1]:9"\nworkers = 1\nocsp-dir = ""\n` +
      `pem-file = {\n  cert = "${withChain(dir, 'site', site)}"\n  ocsp-resp-file = "${response}"\n  ocsp-verify-staple = on\n}\n`,
  );
  const other = makeCa('ocsp-vfy-other-ca');
  for (const args of [[`--config=${configPath}`, '--test'], [`--config=${configPath}`]]) {
    const what = args.includes('--test') ? '--test' : 'start';
    const untrusted = await runWithCaFile(args, other.certPath);
    assert.equal(untrusted.code, 1, `${what}, CA store without the issuer: ${untrusted.output}`);
    assert.match(untrusted.output, /ocsp-resp-file/);
    const missing = await runWithCaFile(args, join(dir, 'no-such-bundle.pem'));
    assert.equal(missing.code, 1, `${what}, no CA store: ${missing.output}`);
    const trusted = await runWithCaFile(args, ca.certPath);
    assert.equal(trusted.code, 0, `${what}, CA store with the issuer: ${trusted.output}`);
  }
});

test('ocsp-verify-staple with ocsp-dir only: an untrusted issuer is a warning, not a refusal (Hitch checks fetched staples when they arrive)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-ocsp-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const site = issue(ca, 'ocsp-test-site', {
    dnsNames: ['site.example.com'],
    extensions: ['authorityInfoAccess=OCSP;URI:http://127.0.0.1:9/'],
  });
  const port = await freePort();
  const configPath = join(dir, 'hitch.conf');
  writeFileSync(
    configPath,
    `frontend = "[127.0.0.1]:${port}"\nbackend = "[127.0.0.1]:9"\nworkers = 1\nocsp-dir = "${dir}"\nocsp-verify-staple = on\npem-file = "${withChain(dir, 'site', site)}"\n`,
  );
  const other = makeCa('ocsp-other-ca');
  for (const args of [[`--config=${configPath}`, '--test'], [`--config=${configPath}`]]) {
    const what = args.includes('--test') ? '--test' : 'start';
    const untrusted = await runWithCaFile(args, other.certPath);
    assert.equal(untrusted.code, 0, `${what}: ${untrusted.output}`);
    assert.match(untrusted.output, /issuer is not trusted by the CA store/);
    const missing = await runWithCaFile(args, join(dir, 'no-such-bundle.pem'));
    assert.equal(missing.code, 0, `${what}: ${missing.output}`);
    assert.match(missing.output, /no CA store/);
  }
});

test('a dead responder is retried with growing back-off and a log line each time', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-ocsp-backoff-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const deadPort = await freePort();
  const site = issue(ca, 'ocsp-backoff', {
    dnsNames: ['backoff.example.com'],
    extensions: [`authorityInfoAccess=OCSP;URI:http://127.0.0.1:${deadPort}/`],
  });
  const material = loadPemFile(
    {
      certPath: withChain(dir, 'backoff', site),
      privateKeyPath: undefined,
      ocspResponsePath: undefined,
    },
    undefined,
    () => {},
  );
  const retries: number[] = [];
  const fetcher = new OcspFetcher([material], {
    cache: ocspDirCache(dir),
    connectTimeoutMs: 1_000,
    responseTimeoutMs: 1_000,
    refreshIntervalMs: 60_000,
    retryBaseMs: 20,
    retryMaxMs: 100,
    trusted: [],
    events: {
      fetched: () => assert.fail('nothing to fetch from a dead responder'),
      failed: (_source, _url, error, attempt, retryMs) => {
        assert.equal(attempt, retries.length + 1);
        assert.match(error.message, /ECONNREFUSED/);
        retries.push(retryMs);
      },
      noResponder: () => assert.fail('the certificate names a responder'),
    },
  });
  t.after(() => fetcher.stop());
  fetcher.start();
  await waitFor(() => retries.length >= 5, 10_000, 'five failed attempts');
  fetcher.stop();
  assert.deepEqual(retries.slice(0, 5), [20, 40, 80, 100, 100]);
});
