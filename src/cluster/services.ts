/**
 * What the primary starts besides workers: start-up warnings about identity and
 * unsupported settings, the pidfile and the metrics endpoint (bound here, served by the
 * services process, answered from here: the primary never reads a scraper's bytes). Each started service adds
 * its cleanup to `cleanups` as soon as it runs, so a later failure still undoes it.
 */
import type { Logger } from 'pino';
import type { ProxyConfig } from '../config/model.js';
import { unsupportedSettings } from '../config/unsupported.js';
import { logCode } from '../errors.js';
import type { CertificateExpiry } from '../ops/metrics.js';
import { checkIdentity, writePidfile } from '../ops/privileges.js';
import type { ServicesProcess } from './services-process.js';

export type Cleanup = () => void | Promise<void>;

export async function startServices(
  config: ProxyConfig,
  logger: Logger,
  cleanups: Cleanup[],
  /** The certificates in service now, read at each scrape (the expiry metric). */
  certificates: (() => readonly CertificateExpiry[]) | undefined,
  /** Serves the metrics endpoint (unprivileged); this process gathers what it answers. */
  services: ServicesProcess,
): Promise<{ readonly metricsListening?: Promise<void> }> {
  for (const warning of checkIdentity(config, { isRoot: process.getuid?.() === 0 }).warnings) {
    logCode(logger, 'UNHITCH_IDENTITY_IGNORED', {}, warning);
  }
  for (const setting of unsupportedSettings(config)) {
    logCode(logger, 'UNHITCH_UNSUPPORTED_SETTING', { option: setting.option }, setting.message);
  }
  if (config.pidfile !== undefined) cleanups.push(writePidfile(config.pidfile));
  if (config.metrics !== undefined) {
    // Imported only when asked for: prom-client is the slowest module to load.
    const { bindMetricsSocket, MetricsExposition } = await import('../ops/metrics.js');
    const { handle, host, port } = await bindMetricsSocket(config.metrics);
    cleanups.push(() => handle.close());
    const exposition = new MetricsExposition(logger, certificates);
    services.on('unhitch:metrics-request', ({ id }) => {
      void exposition
        .gather()
        .then((answer) => services.send({ type: 'unhitch:metrics-answer', id, ...answer }));
    });
    // Each (re)started services process: the socket again. While it restarts, the socket
    // stays bound and listening here; connections wait in its backlog, unread.
    services.onReady(() => services.send({ type: 'unhitch:metrics-listen' }, handle));
    let announced = false;
    const metricsListening = new Promise<void>((resolve) => {
      services.on('unhitch:metrics-listening', () => {
        // Once: a restarted services process serves the same socket again.
        if (!announced) logger.info({ host, port }, 'metrics endpoint listening');
        announced = true;
        resolve();
      });
    });
    return { metricsListening };
  }
  return {};
}
