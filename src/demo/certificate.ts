/**
 * The quick start's certificate: ./tmp/tls/{cert.crt,key.pem} (the paths
 * hitch-compat.conf names) and cert.pem (both combined, the form Hitch takes on its
 * command line), made once with a self-signed P-256 key.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { makeSelfSigned } from '../tls/selfsigned.js';

export interface DemoCertificate {
  readonly dir: string;
  readonly combinedPath: string;
  /** true when this call made the files. */
  readonly created: boolean;
}

export function ensureDemoCertificate(dir = resolve('tmp/tls')): DemoCertificate {
  const paths = ['cert.crt', 'key.pem', 'cert.pem'].map((name) => join(dir, name));
  const created = !paths.every((path) => existsSync(path));
  if (created) makeSelfSigned({ dir, stem: 'cert', keyFileName: 'key.pem' });
  return { dir, combinedPath: join(dir, 'cert.pem'), created };
}
