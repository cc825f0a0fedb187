/**
 * The certificate an acme block contributes, as certificate material: the one the
 * primary obtained and stored last, or, before the first is obtained and when nothing
 * else could serve, a short-lived self-signed placeholder for the acme names (the
 * frontends must be up to answer tls-alpn-01, and a TLS server needs a certificate).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AcmeConfig } from '../config/model.js';
import { type CertificateMaterial, loadPemFile } from './material.js';
import { makeSelfSigned } from './selfsigned.js';

/** Where the obtained certificate lives: key and chain in one file (Hitch's pem-file form). */
export function acmeCertificatePath(acme: AcmeConfig): string {
  return join(acme.stateDir, `${acme.domains[0] ?? 'certificate'}.pem`);
}

export const ACME_PLACEHOLDER_SOURCE =
  'acme placeholder (self-signed, until the first certificate)';

/** The stored certificate, or undefined when there is none yet (ENOENT). */
export function storedAcmeCertificate(
  acme: AcmeConfig,
  warn: (message: string) => void,
): CertificateMaterial | undefined {
  const path = acmeCertificatePath(acme);
  try {
    return loadPemFile(
      { certPath: path, privateKeyPath: undefined, ocspResponsePath: undefined },
      undefined,
      warn,
    );
  } catch (error) {
    // Nothing stored yet is the normal first start; anything else (unreadable, corrupt)
    // is said, and the certificate is obtained again.
    if (!/cannot read: ENOENT/.test((error as Error).message))
      warn(`acme: ${(error as Error).message}; a new certificate will be obtained`);
    return undefined;
  }
}

export function acmePlaceholder(acme: AcmeConfig): CertificateMaterial {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-acme-placeholder-'));
  try {
    const made = makeSelfSigned({
      dir,
      commonName: acme.domains[0] ?? 'localhost',
      dnsNames: acme.domains,
      ipAddresses: [],
      days: 7,
    });
    return {
      ...loadPemFile(
        { certPath: made.combinedPath, privateKeyPath: undefined, ocspResponsePath: undefined },
        undefined,
        () => {},
      ),
      source: ACME_PLACEHOLDER_SOURCE,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
