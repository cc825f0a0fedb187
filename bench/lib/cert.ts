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
  writeCombinedPem(keyPath, certPath, combinedPemPath);
  return { keyPath, certPath, combinedPemPath };
}

/** Key then certificate in one file; 0600 because unhitch (like Hitch) warns otherwise. */
function writeCombinedPem(keyPath: string, certPath: string, combinedPemPath: string): void {
  writeFileSync(combinedPemPath, readFileSync(keyPath, 'utf8') + readFileSync(certPath, 'utf8'), {
    mode: 0o600,
  });
}

export interface CaSignedCertificate extends BenchCertificate {
  /** The throwaway CA that signed it, for the client's trust store (testssl --add-ca). */
  readonly caCertPath: string;
}

/**
 * A P-256 certificate for localhost/127.0.0.1 signed by a throwaway CA, shaped like a real
 * one (serverAuth, a CRL distribution point): a scanner told to trust the CA then judges
 * the TLS server, not the fact that a loopback test certificate is self-signed.
 */
/** Long enough that scanners do not flag it as about to expire (they warn below 30 days). */
const VALID_DAYS = 90;

export function makeCaSignedCertificate(directory: string): CaSignedCertificate {
  const caKeyPath = join(directory, 'ca.key');
  const caCertPath = join(directory, 'ca.pem');
  const keyPath = join(directory, 'key.pem');
  const csrPath = join(directory, 'leaf.csr');
  const certPath = join(directory, 'cert.pem');
  const extPath = join(directory, 'leaf.ext');
  const combinedPemPath = join(directory, 'combined.pem');
  const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  const openssl = (args: string[]): void => {
    execFileSync('openssl', args, { stdio: 'ignore' });
  };
  openssl([
    'req',
    '-x509',
    ...newKey,
    '-sha256',
    '-days',
    String(VALID_DAYS),
    '-subj',
    '/CN=unhitch loopback test CA',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
    '-keyout',
    caKeyPath,
    '-out',
    caCertPath,
  ]);
  openssl([
    'req',
    '-new',
    ...newKey,
    '-subj',
    '/CN=localhost',
    '-keyout',
    keyPath,
    '-out',
    csrPath,
  ]);
  writeFileSync(
    extPath,
    [
      'basicConstraints=CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=serverAuth',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
      // Never fetched (the scan does not phone out); its presence is what a scanner checks.
      'crlDistributionPoints=URI:http://127.0.0.1/unhitch-test-ca.crl',
      '',
    ].join('\n'),
  );
  openssl([
    'x509',
    '-req',
    '-in',
    csrPath,
    '-CA',
    caCertPath,
    '-CAkey',
    caKeyPath,
    '-CAcreateserial',
    '-sha256',
    '-days',
    String(VALID_DAYS),
    '-extfile',
    extPath,
    '-out',
    certPath,
  ]);
  writeCombinedPem(keyPath, certPath, combinedPemPath);
  return { keyPath, certPath, combinedPemPath, caCertPath };
}
