/**
 * The one certificate maker of the tests and benches, a throwaway PKI made with the `openssl`
 * command line: self-signed certificates (as the demo makes them), CAs, server and client
 * certificates issued by them; and `openssl s_client` runs and an OCSP responder.
 */
import { execFileSync, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CertificateMaterial, loadPemFile } from '../../src/tls/material.js';
import { makeSelfSigned } from '../../src/tls/selfsigned.js';

const pkiDir = mkdtempSync(join(tmpdir(), 'unhitch-pki-'));
process.once('exit', () => rmSync(pkiDir, { recursive: true, force: true }));

export interface Issued {
  readonly certPath: string;
  readonly keyPath: string;
  /** Key then certificate: Hitch's combined pem-file. */
  readonly combinedPath: string;
}

export interface TestCa extends Issued {
  readonly name: string;
}

/** A fresh unencrypted P-256 key, as `openssl req` arguments. */
const NEW_P256_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

function openssl(args: readonly string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Key then certificate in one file, 0600 like makeSelfSigned's (unhitch, like Hitch, warns otherwise). */
function combine(stem: string): Issued {
  const certPath = join(pkiDir, `${stem}.crt`);
  const keyPath = join(pkiDir, `${stem}.key`);
  const combinedPath = join(pkiDir, `${stem}.pem`);
  writeFileSync(combinedPath, readFileSync(keyPath, 'utf8') + readFileSync(certPath, 'utf8'), {
    mode: 0o600,
  });
  return { certPath, keyPath, combinedPath };
}

export interface TestCertificate {
  readonly material: CertificateMaterial;
  readonly certPath: string;
  readonly keyPath: string;
  readonly combinedPath: string;
  readonly cert: Buffer;
}

/**
 * A self-signed certificate (ECDSA P-256) for the given names, loaded as the proxy would;
 * written into `dir` (default: this process's throwaway directory).
 */
export function makeCertificate(
  stem: string,
  dnsNames: string[] = ['localhost'],
  dir = join(pkiDir, 'self-signed'),
): TestCertificate {
  const made = makeSelfSigned({ dir, stem, commonName: dnsNames[0] ?? stem, dnsNames });
  const material = loadPemFile(
    { certPath: made.certPath, privateKeyPath: made.keyPath, ocspResponsePath: undefined },
    undefined,
    () => {},
  );
  return {
    material,
    certPath: made.certPath,
    keyPath: made.keyPath,
    combinedPath: made.combinedPath,
    cert: made.cert,
  };
}

let sharedCertificate: TestCertificate | undefined;
export function localhostCertificate(): TestCertificate {
  sharedCertificate ??= makeCertificate('localhost', ['localhost']);
  return sharedCertificate;
}

/** Days a made CA or issued certificate is valid unless told otherwise. */
const DEFAULT_DAYS = 2;

export function makeCa(name: string, days = DEFAULT_DAYS): TestCa {
  openssl([
    'req',
    '-x509',
    ...NEW_P256_KEY,
    '-keyout',
    join(pkiDir, `${name}.key`),
    '-out',
    join(pkiDir, `${name}.crt`),
    '-subj',
    `/CN=${name}`,
    '-days',
    String(days),
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  return { name, ...combine(name) };
}

export interface IssueOptions {
  /** DNS names for a server certificate; none for a client certificate. */
  readonly dnsNames?: readonly string[];
  /** IP addresses for a server certificate's subjectAltName, after the DNS names. */
  readonly ipAddresses?: readonly string[];
  /** Extra x509 extension lines (e.g. authorityInfoAccess for OCSP). */
  readonly extensions?: readonly string[];
  readonly days?: number;
}

let serial = 1;

export function issue(ca: TestCa, stem: string, options: IssueOptions = {}): Issued {
  const keyPath = join(pkiDir, `${stem}.key`);
  const csrPath = join(pkiDir, `${stem}.csr`);
  const extPath = join(pkiDir, `${stem}.ext`);
  const names = options.dnsNames ?? [];
  const altNames = [
    ...names.map((name) => `DNS:${name}`),
    ...(options.ipAddresses ?? []).map((ip) => `IP:${ip}`),
  ];
  const lines = [
    'basicConstraints=CA:FALSE',
    altNames.length > 0 ? `subjectAltName=${altNames.join(',')}` : 'extendedKeyUsage=clientAuth',
    ...(options.extensions ?? []),
  ];
  writeFileSync(extPath, `${lines.join('\n')}\n`);
  openssl([
    'req',
    ...NEW_P256_KEY,
    '-keyout',
    keyPath,
    '-out',
    csrPath,
    '-subj',
    `/CN=${names[0] ?? stem}`,
  ]);
  openssl([
    'x509',
    '-req',
    '-in',
    csrPath,
    '-CA',
    ca.certPath,
    '-CAkey',
    ca.keyPath,
    '-set_serial',
    String(serial++),
    '-out',
    join(pkiDir, `${stem}.crt`),
    '-days',
    String(options.days ?? DEFAULT_DAYS),
    '-extfile',
    extPath,
  ]);
  return combine(stem);
}

export function pkiPath(name: string): string {
  return join(pkiDir, name);
}

export interface SClientResult {
  readonly code: number | null;
  /** stdout and stderr together. */
  readonly output: string;
}

/**
 * `openssl s_client` to 127.0.0.1:port that writes `input` and then waits (-ign_eof) until
 * the server closes: a handshake failure, or a TLS 1.3 rejection after the client's
 * Finished, shows in the exit code and the output instead of racing stdin's end.
 */
export function sClient(
  port: number,
  args: readonly string[],
  input = '',
  timeoutMs = 10_000,
): Promise<SClientResult> {
  return new Promise((resolve) => {
    const child = spawn(
      'openssl',
      ['s_client', '-connect', `127.0.0.1:${port}`, '-ign_eof', ...args],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stdin.on('error', () => {});
    child.stdin.end(input);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

export interface OcspResponder {
  readonly url: string;
  readonly requests: () => number;
  close(): void;
}

/**
 * An OCSP responder on 127.0.0.1: each HTTP POST is answered by `openssl ocsp` acting as
 * the responder for `ca` over `indexPath` (an `openssl ca` index: V good, R revoked).
 */
export async function startOcspResponder(ca: TestCa, indexPath: string): Promise<OcspResponder> {
  let count = 0;
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      count += 1;
      const stem = join(pkiDir, `ocsp-${process.pid}-${count}`);
      writeFileSync(`${stem}.req`, Buffer.concat(chunks));
      try {
        answerOcspRequest(ca, indexPath, `${stem}.req`, `${stem}.resp`);
        response.writeHead(200, { 'content-type': 'application/ocsp-response' });
        response.end(readFileSync(`${stem}.resp`));
      } catch {
        response.writeHead(500);
        response.end();
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}/`, requests: () => count, close: () => server.close() };
}

/** `openssl ocsp` as the CA's responder, offline: request file in, response file out. */
export function answerOcspRequest(
  ca: TestCa,
  indexPath: string,
  requestPath: string,
  responsePath: string,
): void {
  openssl([
    'ocsp',
    '-index',
    indexPath,
    '-CA',
    ca.certPath,
    '-rsigner',
    ca.certPath,
    '-rkey',
    ca.keyPath,
    '-reqin',
    requestPath,
    '-respout',
    responsePath,
    '-nmin',
    '60',
  ]);
}

/** One line of an `openssl ca` index for a certificate issued by `issue`. */
export function indexLine(certPath: string, revoked: boolean): string {
  const certificate = new X509Certificate(readFileSync(certPath));
  const asn1Time = (date: Date): string =>
    `${date.toISOString().slice(2, 19).replace(/[-T:]/g, '')}Z`;
  const expiry = asn1Time(new Date(certificate.validTo));
  const revokedAt = revoked ? asn1Time(new Date(Date.now() - 60_000)) : '';
  const subject = `/${certificate.subject.split('\n').join('/')}`;
  return `${revoked ? 'R' : 'V'}\t${expiry}\t${revokedAt}\t${certificate.serialNumber}\tunknown\t${subject}\n`;
}
