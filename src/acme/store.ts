/**
 * The ACME state directory: the account key and the obtained certificate. Private keys
 * are written with pem-file rules (mode 0600 in a 0700 directory, so tls/material.ts never
 * warns about them) and replaced atomically: a crash mid-write leaves the previous file.
 */
import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { AcmeConfig } from '../config/model.js';
import { UnhitchError } from '../errors.js';
import { acmeCertificatePath } from '../tls/acme-material.js';

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

  get certificatePath(): string {
    return acmeCertificatePath(this.acme);
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

  /** Key then chain, one file (Hitch's combined pem-file), replacing the previous one. */
  saveCertificate(key: Buffer, chain: Buffer): void {
    this.writePrivate(this.certificatePath, Buffer.concat([key, chain]));
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
