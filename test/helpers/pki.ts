/**
 * A throwaway PKI made with the `openssl` command line for the tests: CAs, server
 * certificates and client certificates issued by them, and `openssl s_client` runs.
 */
import { execFileSync, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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

function combine(stem: string): Issued {
  const certPath = join(pkiDir, `${stem}.crt`);
  const keyPath = join(pkiDir, `${stem}.key`);
  const combinedPath = join(pkiDir, `${stem}.pem`);
  execFileSync('sh', ['-c', `cat "${keyPath}" "${certPath}" > "${combinedPath}"`]);
  return { certPath, keyPath, combinedPath };
}

export function makeCa(name: string): TestCa {
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
    '2',
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
  /** Extra x509 extension lines (e.g. authorityInfoAccess for OCSP). */
  readonly extensions?: readonly string[];
}

let serial = 1;

export function issue(ca: TestCa, stem: string, options: IssueOptions = {}): Issued {
  const keyPath = join(pkiDir, `${stem}.key`);
  const csrPath = join(pkiDir, `${stem}.csr`);
  const extPath = join(pkiDir, `${stem}.ext`);
  const names = options.dnsNames ?? [];
  const lines = [
    'basicConstraints=CA:FALSE',
    names.length > 0
      ? `subjectAltName=${names.map((name) => `DNS:${name}`).join(',')}`
      : 'extendedKeyUsage=clientAuth',
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
    '2',
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
