/**
 * Self-signed certificates via the `openssl` command line. Node has no X.509 writer, and
 * openssl is on every machine Hitch runs on; used by the demo (`npm start`) and the tests.
 */

import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UnhitchError } from '../errors.js';

export type KeyType = 'ec' | 'rsa';

export interface SelfSignedOptions {
  /** Directory to write into; created if missing. */
  readonly dir: string;
  /** File name stem: `<stem>.crt`, `<stem>.key`, `<stem>.pem` (key + cert). */
  readonly stem?: string;
  /** Override the key file's name (default `<stem>.key`), e.g. Hitch's `key.pem`. */
  readonly keyFileName?: string;
  readonly commonName?: string;
  /** DNS names and IP addresses for subjectAltName. */
  readonly dnsNames?: readonly string[];
  readonly ipAddresses?: readonly string[];
  readonly keyType?: KeyType;
  readonly days?: number;
}

export interface SelfSignedCertificate {
  readonly certPath: string;
  readonly keyPath: string;
  /** Key followed by certificate: Hitch's combined pem-file form. */
  readonly combinedPath: string;
  readonly cert: Buffer;
  readonly key: Buffer;
}

export class OpensslMissingError extends UnhitchError<'UNHITCH_OPENSSL_MISSING'> {
  constructor(cause: unknown) {
    super(
      'UNHITCH_OPENSSL_MISSING',
      'cannot run `openssl` to make a self-signed certificate; install it (apt-get install openssl)',
      {
        cause,
      },
    );
  }
}

export function makeSelfSigned(options: SelfSignedOptions): SelfSignedCertificate {
  const stem = options.stem ?? 'cert';
  const commonName = options.commonName ?? 'localhost';
  const dnsNames = options.dnsNames ?? ['localhost'];
  const ipAddresses = options.ipAddresses ?? ['127.0.0.1', '::1'];
  mkdirSync(options.dir, { recursive: true });
  const certPath = join(options.dir, `${stem}.crt`);
  const keyPath = join(options.dir, options.keyFileName ?? `${stem}.key`);
  const combinedPath = join(options.dir, `${stem}.pem`);
  const keyArgs =
    (options.keyType ?? 'ec') === 'ec'
      ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']
      : ['-newkey', 'rsa:2048'];
  const san = [...dnsNames.map((n) => `DNS:${n}`), ...ipAddresses.map((ip) => `IP:${ip}`)];
  const args = [
    'req',
    '-x509',
    ...keyArgs,
    '-nodes',
    '-sha256',
    '-days',
    String(options.days ?? 825),
    '-subj',
    `/CN=${commonName}`,
    '-keyout',
    keyPath,
    '-out',
    certPath,
  ];
  if (san.length > 0) args.push('-addext', `subjectAltName=${san.join(',')}`);
  try {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new OpensslMissingError(err);
    throw err;
  }
  const cert = readFileSync(certPath);
  const key = readFileSync(keyPath);
  writeFileSync(combinedPath, Buffer.concat([key, cert]), { mode: 0o600 });
  return { certPath, keyPath, combinedPath, cert, key };
}
