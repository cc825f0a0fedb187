/**
 * The ACME state directory, owned here: the account key and the obtained certificate
 * (key then chain, Hitch's combined pem-file), and what the acme block contributes to the
 * certificates in service (`certificateSource`). Private keys are written with pem-file
 * rules (mode 0600 in a 0700 directory, so tls/material.ts never warns about them) and
 * replaced atomically: a crash mid-write leaves the previous file.
 *
 * Only the root primary touches these files; the unprivileged services process gets
 * the account key over IPC and hands back what the CA issued (cluster/acme.ts).
 */
import { createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { AcmeConfig } from '../config/model.js';
import { UnhitchError } from '../errors.js';
import {
  type AcmeCertificateSource,
  type CertificateMaterial,
  certificateNames,
  loadPemFile,
} from '../tls/material.js';
import { makeSelfSigned } from '../tls/selfsigned.js';

export const ACME_PLACEHOLDER_SOURCE =
  'acme placeholder (self-signed, until the first certificate)';

export class AcmeStoreError extends UnhitchError<'UNHITCH_ACME_STORE'> {
  constructor(message: string, cause: unknown) {
    super('UNHITCH_ACME_STORE', message, { cause });
    this.name = 'AcmeStoreError';
  }
}

function describe(error: unknown): string {
  return (error as NodeJS.ErrnoException).code ?? (error as Error).message;
}

export class AcmeStore {
  constructor(private readonly acme: AcmeConfig) {}

  get accountKeyPath(): string {
    return join(this.acme.stateDir, 'account.key');
  }

  /** Where the obtained certificate lives: key and chain in one file. */
  get certificatePath(): string {
    return join(this.acme.stateDir, `${this.acme.domains[0] ?? 'certificate'}.pem`);
  }

  /** The account key (PEM), made and stored on first use. */
  accountKey(): Buffer {
    try {
      return readFileSync(this.accountKeyPath);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT')
        throw new AcmeStoreError(
          `cannot read ACME account key ${this.accountKeyPath}: ${describe(error)}`,
          error,
        );
    }
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem = Buffer.from(privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
    this.writePrivate(this.accountKeyPath, pem);
    return pem;
  }

  /**
   * Key then chain, one file, replacing the previous one. Both came from the
   * unprivileged side: the leaf must parse, match the key and cover every acme domain
   * before it replaces the last good certificate.
   */
  saveCertificate(key: Buffer, chain: Buffer): void {
    this.check(key, chain);
    this.writePrivate(this.certificatePath, Buffer.concat([key, chain]));
  }

  /** The stored certificate, or undefined when there is none yet (ENOENT). */
  stored(warn: (message: string) => void): CertificateMaterial | undefined {
    try {
      return loadPemFile(
        { certPath: this.certificatePath, privateKeyPath: undefined, ocspResponsePath: undefined },
        undefined,
        warn,
      );
    } catch (error) {
      // Nothing stored yet is the normal first start; anything else (unreadable, corrupt)
      // is said, and the certificate is obtained again.
      // (The message is Hitch's for a pem-file, "... No such file or directory (ENOENT)".)
      if (!/\bENOENT\b/.test((error as Error).message))
        warn(`acme: ${(error as Error).message}; a new certificate will be obtained`);
      return undefined;
    }
  }

  /**
   * What the acme block adds to the certificates in service: the stored certificate, or,
   * before the first is obtained and when nothing else could serve, a short-lived
   * self-signed placeholder for the acme names (the frontends must be up to answer
   * tls-alpn-01, and a TLS server needs a certificate).
   */
  certificateSource(warn: (message: string) => void): AcmeCertificateSource {
    return (needed) => this.stored(warn) ?? (needed ? this.placeholder() : undefined);
  }

  private placeholder(): CertificateMaterial {
    const dir = mkdtempSync(join(tmpdir(), 'unhitch-acme-placeholder-'));
    try {
      const made = makeSelfSigned({
        dir,
        commonName: this.acme.domains[0] ?? 'localhost',
        dnsNames: this.acme.domains,
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

  /** The issued key and chain belong together and name every acme domain. */
  private check(key: Buffer, chain: Buffer): void {
    let leaf: X509Certificate;
    let matches: boolean;
    try {
      leaf = new X509Certificate(chain);
      matches = leaf.checkPrivateKey(createPrivateKey(key));
    } catch (error) {
      throw new AcmeStoreError(`the issued certificate does not parse: ${describe(error)}`, error);
    }
    if (!matches) throw new AcmeStoreError('the issued certificate is for another key', undefined);
    const names = certificateNames(leaf);
    const missing = this.acme.domains.filter((name) => !names.includes(name));
    if (missing.length > 0)
      throw new AcmeStoreError(
        `the issued certificate does not cover ${missing.join(', ')}`,
        undefined,
      );
  }

  private writePrivate(path: string, bytes: Buffer): void {
    const temporary = `${path}.${process.pid}.tmp`;
    try {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      writeFileSync(temporary, bytes, { mode: 0o600 });
      // An existing file keeps its mode through writeFileSync; make sure it is ours.
      chmodSync(temporary, 0o600);
      renameSync(temporary, path);
    } catch (error) {
      rmSync(temporary, { force: true });
      throw new AcmeStoreError(`cannot write ${path}: ${describe(error)}`, error);
    }
  }
}

/** The acme block's certificate source for loadCertificates; undefined without one. */
export function acmeCertificateSource(
  acme: AcmeConfig | undefined,
  warn: (message: string) => void,
): AcmeCertificateSource | undefined {
  return acme === undefined ? undefined : new AcmeStore(acme).certificateSource(warn);
}
