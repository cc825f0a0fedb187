/**
 * Hitch's pem-dir: every regular file in a directory (optionally only names matching
 * pem-dir-glob) is a global certificate. Read whenever certificates load — start,
 * --test, and every SIGHUP — so files added, changed or removed take effect on reload.
 */
import { readdirSync, statSync } from 'node:fs';
import { join, matchesGlob } from 'node:path';
import { ConfigError } from '../config/errors.js';
import type { PemFileConfig } from '../config/model.js';

/**
 * The directory's certificate files in lexicographic order (Hitch scans with alphasort).
 * Hidden files (editor swap files, `..data` links of mounted secrets) are left out.
 */
export function pemDirFiles(dir: string, glob: string | undefined): PemFileConfig[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    throw new ConfigError(
      'UNHITCH_CONFIG_FILE',
      `${dir}: pem-dir cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  return names
    .filter((name) => !name.startsWith('.'))
    .filter((name) => glob === undefined || matchesGlob(name, glob))
    .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
    .map((name) => join(dir, name))
    .filter((path) => isRegularFile(path))
    .map((certPath) => ({ certPath, privateKeyPath: undefined, ocspResponsePath: undefined }));
}

function isRegularFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false; // a dangling link or a file removed meanwhile: not a certificate
  }
}

/**
 * The global pem-files with pem-dir's in front: the default certificate (the last one)
 * stays the last pem-file given; with none, Hitch falls back to the directory's first file.
 */
export function globalPemFiles(
  pemFiles: readonly PemFileConfig[],
  dirFiles: readonly PemFileConfig[],
): PemFileConfig[] {
  if (pemFiles.length > 0 || dirFiles.length === 0) return [...dirFiles, ...pemFiles];
  const [first, ...rest] = dirFiles;
  return first === undefined ? [] : [...rest, first];
}
