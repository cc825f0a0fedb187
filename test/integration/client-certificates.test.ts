/**
 * Hitch client certificates (client-verify, client-verify-ca: Hitch 1.6 globally and per
 * frontend, 1.8 per pem-file chosen by SNI), the PROXY v2 bits that report them, and sni-nomatch-abort's
 * unrecognized_name alert: real openssl s_client and node clients, certificates from a
 * throwaway CA and a second, untrusted one.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import {
  DEFAULT_CONFIG,
  DEFAULT_TLS,
  type FrontendConfig,
  type PemFileConfig,
  type ProxyConfig,
} from '../../src/config/model.js';
import { loadCertificates } from '../../src/tls/material.js';
import { issue, makeCa, sClient } from '../kit/pki.js';
import { freePort } from '../kit/ports.js';
import {
  closeBackend,
  connectClient,
  readAll,
  startBackend,
  startProxy,
  waitFor,
} from '../kit/proxy-fixture.js';
import { startUnhitch } from '../kit/unhitch-process.js';

const trusted = makeCa('client-ca');
const untrusted = makeCa('other-ca');
const serverCa = makeCa('server-ca');
const goodClient = issue(trusted, 'client01');
const strangerClient = issue(untrusted, 'stranger01');
const defaultSite = issue(serverCa, 'default-site', { dnsNames: ['default.example.com'] });
const site1 = issue(serverCa, 'site1', { dnsNames: ['site1.example.com'] });
const site2 = issue(serverCa, 'site2', { dnsNames: ['site2.example.com'] });
const site3 = issue(serverCa, 'site3', { dnsNames: ['site3.example.com'] });

const GREETING = 'hello from backend\n';

/** A backend that greets each connection, records what arrives, and closes when the client does. */
async function greetingBackend() {
  const received: Promise<Buffer>[] = [];
  const backend = await startBackend((socket: Socket) => {
    received.push(readAll(socket));
    socket.write(GREETING);
    socket.end();
  });
  return { ...backend, received };
}

function pem(path: string, extra: Partial<PemFileConfig> = {}): PemFileConfig {
  return { certPath: path, privateKeyPath: undefined, ocspResponsePath: undefined, ...extra };
}

function frontend(pemFiles: PemFileConfig[], extra: Partial<FrontendConfig> = {}): FrontendConfig {
  return {
    ...DEFAULT_TLS,
    address: { kind: 'tcp', host: '127.0.0.1', port: 0 },
    pemFiles,
    matchGlobalCerts: false,
    ...extra,
  };
}

/** Start a proxy from a config model, loading certificates (and CAs) as the primary does. */
async function proxyFor(backendPort: number, overrides: Partial<ProxyConfig>) {
  const config: ProxyConfig = {
    ...DEFAULT_CONFIG,
    source: '<test>',
    backend: { kind: 'tcp', host: '127.0.0.1', port: backendPort },
    frontends: [frontend([])],
    ...overrides,
  };
  return startProxy(backendPort, config, loadCertificates(config));
}

const withCert = (issued: { certPath: string; keyPath: string }): string[] => [
  '-cert',
  issued.certPath,
  '-key',
  issued.keyPath,
];

function assertServed(result: { code: number | null; output: string }, what: string): void {
  assert.match(result.output, /hello from backend/, `${what}: ${result.output}`);
}

function assertRefused(result: { code: number | null; output: string }, what: string): void {
  assert.notEqual(result.code, 0, `${what}: exit code (${result.output})`);
  assert.doesNotMatch(result.output, /hello from backend/, `${what}: no backend bytes`);
}

test('client-verify = required: no certificate and a certificate from another CA fail the handshake', async (t) => {
  const backend = await greetingBackend();
  t.after(() => closeBackend(backend));
  const proxy = await proxyFor(backend.port, {
    pemFiles: [pem(defaultSite.combinedPath)],
    tls: { ...DEFAULT_TLS, clientVerify: 'required', clientVerifyCa: trusted.certPath },
  });
  t.after(() => proxy.close());

  for (const version of ['-tls1_2', '-tls1_3']) {
    assertServed(await sClient(proxy.port, [version, ...withCert(goodClient)]), `${version} good`);

    const none = await sClient(proxy.port, [version]);
    assertRefused(none, `${version} without a certificate`);
    // OpenSSL itself fails the handshake: handshake_failure (40) in TLS 1.2,
    // certificate_required (116) in TLS 1.3.
    assert.match(none.output, version === '-tls1_2' ? /alert number 40/ : /alert number 116/);

    const stranger = await sClient(proxy.port, [version, ...withCert(strangerClient)]);
    assertRefused(stranger, `${version} certificate from another CA`);
  }
  // TLS 1.2: the server's Finished never leaves, so the client's handshake itself fails
  // (s_client prints a session summary either way; a node client tells them apart).
  await assert.rejects(
    connectClient(proxy.port, {
      maxVersion: 'TLSv1.2',
      cert: readFileSync(strangerClient.certPath),
      key: readFileSync(strangerClient.keyPath),
    }),
  );
  await waitFor(() => proxy.log.withReason('client_cert_missing').length === 2, 5_000, 'missing');
  await waitFor(() => proxy.log.withReason('client_cert_rejected').length === 3, 5_000, 'rejected');
  assert.equal(backend.received.length, 2, 'only the good certificates reached the backend');
});

test('client-verify = optional: no certificate is fine, a wrong one fails', async (t) => {
  const backend = await greetingBackend();
  t.after(() => closeBackend(backend));
  const proxy = await proxyFor(backend.port, {
    pemFiles: [pem(defaultSite.combinedPath)],
    tls: { ...DEFAULT_TLS, clientVerify: 'optional', clientVerifyCa: trusted.certPath },
  });
  t.after(() => proxy.close());

  for (const version of ['-tls1_2', '-tls1_3']) {
    assertServed(await sClient(proxy.port, [version]), `${version} without a certificate`);
    assertServed(await sClient(proxy.port, [version, ...withCert(goodClient)]), `${version} good`);
    assertRefused(
      await sClient(proxy.port, [version, ...withCert(strangerClient)]),
      `${version} certificate from another CA`,
    );
  }
  await waitFor(() => proxy.log.withReason('client_cert_rejected').length === 2, 5_000, 'rejected');
});

test('client-verify per frontend and per pem-file, chosen by SNI (Hitch test38/test41)', async (t) => {
  const backend = await greetingBackend();
  t.after(() => closeBackend(backend));
  const proxy = await proxyFor(backend.port, {
    // Global pem-files: site1 requires a client certificate, the default does not.
    pemFiles: [
      pem(site1.combinedPath, { clientVerify: 'required', clientVerifyCa: trusted.certPath }),
      pem(defaultSite.combinedPath),
    ],
    frontends: [
      frontend([]),
      // Own pem-files: site3 requires (its block), site2 inherits the frontend's none.
      frontend([
        pem(site3.combinedPath, { clientVerify: 'required', clientVerifyCa: trusted.certPath }),
        pem(site2.combinedPath),
      ]),
      // A frontend's client-verify applies to its own pem-files.
      frontend([pem(site2.combinedPath)], {
        clientVerify: 'required',
        clientVerifyCa: trusted.certPath,
      }),
    ],
  });
  t.after(() => proxy.close());
  const [first, second, third] = proxy.proxy.addresses().map((address) => address.port);

  const sni = (name: string) => ['-servername', name];
  assertServed(await sClient(first ?? 0, []), 'default certificate, no SNI');
  assertServed(await sClient(first ?? 0, sni('default.example.com')), 'default by SNI');
  assertRefused(await sClient(first ?? 0, sni('site1.example.com')), 'site1 without certificate');
  assertServed(
    await sClient(first ?? 0, [...sni('site1.example.com'), ...withCert(goodClient)]),
    'site1 with certificate',
  );
  assertServed(await sClient(second ?? 0, sni('site2.example.com')), 'site2: no verification');
  assertRefused(await sClient(second ?? 0, sni('site3.example.com')), 'site3 without certificate');
  assertServed(
    await sClient(second ?? 0, [...sni('site3.example.com'), ...withCert(goodClient)]),
    'site3 with certificate',
  );
  assertRefused(await sClient(third ?? 0, []), 'frontend-level required');
  assertServed(await sClient(third ?? 0, withCert(goodClient)), 'frontend-level with certificate');
});

test('a session made without a client certificate never resumes where one is required', async (t) => {
  const backend = await greetingBackend();
  t.after(() => closeBackend(backend));
  // The same certificate on two frontends (tickets are valid on both): one asks for no
  // client certificate, the other requires one.
  const proxy = await proxyFor(backend.port, {
    frontends: [
      frontend([pem(site2.combinedPath)]),
      frontend([pem(site2.combinedPath)], {
        clientVerify: 'required',
        clientVerifyCa: trusted.certPath,
      }),
    ],
  });
  t.after(() => proxy.close());
  // As in the cluster: one ticket key for every frontend and worker.
  proxy.proxy.setTicketKey(randomBytes(48));
  const [openPort, strictPort] = proxy.proxy.addresses().map((address) => address.port);

  const open = await connectClient(openPort ?? 0, { servername: 'site2.example.com' });
  const session = await new Promise<Buffer>((resolve) => open.once('session', resolve));
  open.destroy();
  // Control: the ticket does resume where it was made.
  const again = await connectClient(openPort ?? 0, { servername: 'site2.example.com', session });
  assert.equal(again.isSessionReused(), true);
  again.destroy();

  const resumed = await connectClient(strictPort ?? 0, {
    servername: 'site2.example.com',
    session,
  });
  assert.equal(resumed.isSessionReused(), false, 'a full handshake, with the certificate request');
  // TLS 1.3: the refusal (certificate_required) arrives after the client's Finished.
  await assert.rejects(
    new Promise((resolve, reject) => {
      resumed.once('error', reject);
      resumed.once('close', () => reject(new Error('closed')));
      resumed.once('data', resolve);
    }),
  );
});

test('sni-nomatch-abort: the client receives unrecognized_name (112); global vs frontend as Hitch', async (t) => {
  const backend = await greetingBackend();
  t.after(() => closeBackend(backend));
  const proxy = await proxyFor(backend.port, {
    pemFiles: [pem(site1.combinedPath), pem(defaultSite.combinedPath)],
    tls: { ...DEFAULT_TLS, sniNomatchAbort: true },
    frontends: [
      // No pem-files of its own: the global setting decides, as in Hitch.
      frontend([], { sniNomatchAbort: false }),
      // Own pem-files: its own value overrides the global one.
      frontend([pem(site2.combinedPath)], { sniNomatchAbort: false }),
    ],
  });
  t.after(() => proxy.close());
  const [globalPort, ownPort] = proxy.proxy.addresses().map((address) => address.port);

  for (const version of ['-tls1_2', '-tls1_3']) {
    const refused = await sClient(globalPort ?? 0, [version, '-servername', 'nope.example.com']);
    assertRefused(refused, `${version} unknown name`);
    assert.match(refused.output, /unrecognized name/, refused.output);
    assert.match(refused.output, /alert number 112/, refused.output);
  }
  assertServed(
    await sClient(globalPort ?? 0, ['-servername', 'site1.example.com']),
    'a known name is served',
  );
  assertServed(await sClient(globalPort ?? 0, []), 'no SNI: the default certificate');
  assertServed(
    await sClient(ownPort ?? 0, ['-servername', 'nope.example.com']),
    'frontend with own certificates and sni-nomatch-abort = off',
  );
  await waitFor(() => proxy.log.withReason('sni_nomatch').length === 2, 5_000, 'sni_nomatch');
});

test('PROXY v2 with client certificates: client bits, verify, PEM TLV 0xE0; proxy-authority and proxy-tlv off', async (t) => {
  const backend = await greetingBackend();
  t.after(() => closeBackend(backend));
  const clientPem = readFileSync(goodClient.certPath, 'latin1');
  const base = {
    proxyProtocol: 'v2' as const,
    pemFiles: [pem(defaultSite.combinedPath)],
    tls: { ...DEFAULT_TLS, clientVerify: 'optional' as const, clientVerifyCa: trusted.certPath },
  };
  const proxy = await proxyFor(backend.port, { ...base, proxyClientCert: true });
  t.after(() => proxy.close());

  const headerOf = async (port: number, args: string[]) => {
    const before = backend.received.length;
    assertServed(await sClient(port, args), args.join(' '));
    await waitFor(() => backend.received.length === before + 1, 5_000, 'backend connection');
    const bytes = (await backend.received[before]) as Buffer;
    return bytes.subarray(0, 16 + bytes.readUInt16BE(14));
  };
  /** TLVs after the 12-byte IPv4 address block, as [type, value]. */
  const tlvs = (header: Buffer): Array<[number, Buffer]> => {
    const found: Array<[number, Buffer]> = [];
    for (let at = 28; at < header.length; ) {
      const length = header.readUInt16BE(at + 1);
      found.push([header[at] as number, header.subarray(at + 3, at + 3 + length)]);
      at += 3 + length;
    }
    return found;
  };

  const withCertificate = tlvs(
    await headerOf(proxy.port, ['-servername', 'default.example.com', ...withCert(goodClient)]),
  );
  // Hitch's order: authority, client certificate, SSL.
  assert.deepEqual(
    withCertificate.map(([type]) => type),
    [0x02, 0xe0, 0x20],
  );
  const ssl = withCertificate[2]?.[1] as Buffer;
  assert.equal(ssl[0], 0x07, 'PP2_CLIENT_SSL | CERT_CONN | CERT_SESS');
  assert.equal(ssl.readUInt32BE(1), 0, 'verify 0: presented and verified');
  // Hitch's PEM_write_bio_X509_AUX: the same base64, labelled TRUSTED CERTIFICATE.
  assert.equal(
    withCertificate[1]?.[1].toString('latin1'),
    clientPem.replaceAll(' CERTIFICATE-----', ' TRUSTED CERTIFICATE-----'),
  );

  const without = tlvs(await headerOf(proxy.port, ['-servername', 'default.example.com']));
  assert.deepEqual(
    without.map(([type]) => type),
    [0x02, 0x20],
  );
  const sslWithout = without[1]?.[1] as Buffer;
  assert.equal(sslWithout[0], 0x01, 'PP2_CLIENT_SSL only');
  assert.equal(sslWithout.readUInt32BE(1), 1, 'verify 1: no certificate verified');

  const noAuthority = await proxyFor(backend.port, { ...base, proxyAuthority: false });
  t.after(() => noAuthority.close());
  const sslOnly = tlvs(await headerOf(noAuthority.port, ['-servername', 'default.example.com']));
  assert.deepEqual(
    sslOnly.map(([type]) => type),
    [0x20],
    'proxy-authority = off: the SNI name is not sent',
  );

  const bare = await proxyFor(backend.port, { ...base, proxyAuthority: false, proxyTlv: false });
  t.after(() => bare.close());
  const header = await headerOf(bare.port, ['-servername', 'default.example.com']);
  assert.equal(header.length, 16 + 12, 'proxy-authority = off and proxy-tlv = off: no TLV at all');
  assert.equal(header.readUInt16BE(14), 12);
});

/** unhitch itself, from a hitch.conf ending in `rest`, in front of a greeting backend. */
async function startBinary(t: TestContext, rest: string) {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-binary-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const backend = await greetingBackend();
  t.after(() => closeBackend(backend));
  const port = await freePort();
  const configPath = join(dir, 'hitch.conf');
  writeFileSync(
    configPath,
    `frontend = "[127.0.0.1]:${port}"\nbackend = "[127.0.0.1]:${backend.port}"\n${rest}`,
  );
  const unhitch = startUnhitch([`--config=${configPath}`]);
  t.after(() => unhitch.kill('SIGKILL'));
  const workers = Number(/workers = (\d+)/.exec(rest)?.[1] ?? '1');
  await unhitch.waitForLogs((line) => line.msg === 'worker ready', workers);
  return { port, unhitch };
}

test('the real binary: client-verify from hitch.conf (pem-file block), CA bundle shipped to the workers', async (t) => {
  const { port } = await startBinary(
    t,
    'workers = 2\n' +
      `pem-file = {\n  cert = "${site1.combinedPath}"\n  client-verify = required\n` +
      `  client-verify-ca = "${trusted.certPath}"\n}\npem-file = "${defaultSite.combinedPath}"\n`,
  );
  const sni = ['-servername', 'site1.example.com'];
  assertServed(await sClient(port, []), 'default certificate: no client certificate asked');
  assertRefused(await sClient(port, sni), 'site1 without a certificate');
  assertRefused(await sClient(port, [...sni, ...withCert(strangerClient)]), 'site1, other CA');
  assertServed(await sClient(port, [...sni, ...withCert(goodClient)]), 'site1 with a certificate');
});

test('the real binary: sni-nomatch-abort = on, s_client sees alert 112 "unrecognized name"', async (t) => {
  const { port, unhitch } = await startBinary(
    t,
    'workers = 1\nsni-nomatch-abort = on\n' +
      `pem-file = "${site1.combinedPath}"\npem-file = "${defaultSite.combinedPath}"\n`,
  );
  const refused = await sClient(port, ['-servername', 'nope.example.com']);
  assertRefused(refused, 'unknown name');
  assert.match(refused.output, /unrecognized name/, refused.output);
  assert.match(refused.output, /SSL alert number 112/, refused.output);
  assertServed(await sClient(port, ['-servername', 'site1.example.com']), 'known name');
  await unhitch.waitForLog((line) => line.reason === 'sni_nomatch');
});
