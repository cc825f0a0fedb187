/**
 * Run by `npm ci` (the prepare script): makes ./tmp/tls so `npm start` and
 * `unhitch --test --config=hitch-compat.conf` work at once. Never fails the install:
 * without openssl it says so and `npm start` will say it again.
 */
import { ensureDemoCertificate } from './certificate.js';

try {
  const certificate = ensureDemoCertificate();
  if (certificate.created)
    process.stdout.write(`made a self-signed certificate in ${certificate.dir}\n`);
} catch (error) {
  process.stderr.write(`unhitch: no demo certificate made: ${(error as Error).message}\n`);
}
