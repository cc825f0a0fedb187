/**
 * Where each pem-file was configured, so a certificate that cannot be read names the
 * config file and line, as Hitch does ("Error in configuration file …, line N: Unable to
 * stat x509 certificate PEM file …"). Kept beside the model, not in it: the model's
 * PemFileConfig stays the plain value tests and workers compare and copy.
 */
import type { SourcePosition } from './errors.js';
import type { PemFileConfig } from './model.js';

const positions = new WeakMap<PemFileConfig, SourcePosition>();

export function notePemPosition<T extends PemFileConfig>(
  pem: T,
  position: SourcePosition | undefined,
): T {
  if (position !== undefined) positions.set(pem, position);
  return pem;
}

export function pemPosition(pem: PemFileConfig): SourcePosition | undefined {
  return positions.get(pem);
}
