/**
 * A throwaway PKI made with the `openssl` command line for the tests: CAs, server
 * certificates and client certificates issued by them, and `openssl s_client` runs.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
