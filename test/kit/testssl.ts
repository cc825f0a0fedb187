/** How tests and benches run testssl.sh against a loopback proxy. */

/** Non-interactive, plain-text, quiet, and only the loopback address (no DNS lookups). */
export const TESTSSL_BATCH_ARGS = [
  '--warnings',
  'batch',
  '--color',
  '0',
  '--quiet',
  '--ip',
  '127.0.0.1',
] as const;
