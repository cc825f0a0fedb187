/**
 * What the primary starts besides workers: start-up warnings about identity and
 * unsupported settings, the pidfile and the metrics endpoint. Each started service adds
 * its cleanup to `cleanups` as soon as it runs, so a later failure still undoes it.
 */
import type { Logger } from 'pino';
import type { ProxyConfig } from '../config/model.js';
import { unsupportedSettings } from '../config/unsupported.js';
import { logCode } from '../errors.js';
import type { CertificateExpiry } from '../ops/metrics.js';
import { checkIdentity, writePidfile } from '../ops/privileges.js';

export type Cleanup = () => void | Promise<void>;

export async function startServices(
  config: ProxyConfig,
  logger: Logger,
  cleanups: Cleanup[],
  /** The certificates in service now, read at each scrape (the expiry metric). */
  certificates?: () => readonly CertificateExpiry[],
): Promise<void> {
  for (const warning of checkIdentity(config, { isRoot: process.getuid?.() === 0 }).warnings) {
    logCode(logger, 'UNHITCH_IDENTITY_IGNORED', {}, warning);
  }
  for (const setting of unsupportedSettings(config)) {
    logCode(logger, 'UNHITCH_UNSUPPORTED_SETTING', { option: setting.option }, setting.message);
  }
  if (config.pidfile !== undefined) cleanups.push(writePidfile(config.pidfile));
  if (config.metrics !== undefined) {
    // Imported only when asked for: prom-client is the slowest module to load.
    const { startMetricsServer } = await import('../ops/metrics.js');
    const server = await startMetricsServer({
      address: config.metrics,
      logger,
      ...(certificates === undefined ? {} : { certificates }),
    });
    // startMetricsServer logs 'metrics endpoint listening' itself.
    cleanups.push(() => server.close());
  }
}
