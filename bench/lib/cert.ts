/** A throwaway self-signed P-256 certificate for loopback benches. */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface BenchCertificate {
  readonly keyPath: string;
  readonly certPath: string;
  /** key + certificate in one file, as Hitch and HAProxy want it. */
  readonly combinedPemPath: string;
}

export function makeSelfSignedCertificate(directory: string): BenchCertificate {
  const keyPath = join(directory, 'key.pem');
  const certPath = join(directory, 'cert.pem');
  const combinedPemPath = join(directory, 'combined.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=localhost',
      '-keyout',
      keyPath,
      '-out',
      certPath,
    ],
    { stdio: 'ignore' },
  );
  // 0600: unhitch (like Hitch) warns about private keys readable by others.
  writeFileSync(combinedPemPath, readFileSync(keyPath, 'utf8') + readFileSync(certPath, 'utf8'), {
    mode: 0o600,
  });
  return { keyPath, certPath, combinedPemPath };
}
