/**
 * The primary's OCSP fetcher for the running generation: started with the workers,
 * replaced with the new certificate set after a reload, stopped with the primary. Logs
 * every fetch, failure (with the retry delay) and revoked status, as Hitch's OCSP
 * process does.
 */
import type { Logger } from 'pino';
import type { ProxyConfig } from '../config/model.js';
import { logCode } from '../errors.js';
import type { CertificateMaterial } from '../tls/material.js';
import { loadCaStore } from '../tls/ocsp.js';
import { OCSP_RETRY_BASE_MS, OCSP_RETRY_MAX_MS, OcspFetcher } from '../tls/ocsp-fetcher.js';

export class OcspService {
  private fetcher: OcspFetcher | undefined;

  constructor(private readonly logger: Logger) {}

  /** (Re)start for a generation; without ocsp-dir there is nothing to fetch. */
  start(config: ProxyConfig, certificates: readonly CertificateMaterial[]): void {
    this.stop();
    const dir = config.ocspDir;
    if (dir === undefined) return;
    let trusted: ReturnType<typeof loadCaStore> = [];
    if (certificates.some((material) => material.ocspVerifyStaple)) {
      try {
        trusted = loadCaStore();
      } catch (error) {
        // loadCertificates already refused this; keep fetching, verification will fail loudly.
        logCode(this.logger, 'UNHITCH_OCSP_INVALID', { err: error }, 'no CA store for OCSP');
      }
    }
    const logger = this.logger;
    this.fetcher = new OcspFetcher(certificates, {
      dir,
      connectTimeoutMs: config.ocspConnectTimeoutMs,
      responseTimeoutMs: config.ocspResponseTimeoutMs,
      refreshIntervalMs: config.ocspRefreshIntervalMs,
      retryBaseMs: OCSP_RETRY_BASE_MS,
      retryMaxMs: OCSP_RETRY_MAX_MS,
      trusted,
      events: {
        fetched: (source, url, checked, nextFetchMs) => {
          const fields = {
            cert: source,
            responder: url,
            status: checked.status,
            nextUpdate: checked.nextUpdate?.toISOString(),
            refreshInSec: Math.round(nextFetchMs / 1000),
          };
          if (checked.status === 'good') logger.info(fields, 'OCSP response fetched');
          else
            logger.error(
              { ...fields, reason: checked.revocationReason },
              `OCSP: certificate status ${checked.status}`,
            );
        },
        failed: (source, url, error, attempt, retryMs) =>
          logCode(
            logger,
            'UNHITCH_OCSP_FETCH',
            {
              cert: source,
              responder: url,
              attempt,
              retryInSec: Math.round(retryMs / 1000),
              err: error,
            },
            'OCSP fetch failed; nothing new stapled, retrying',
          ),
        noResponder: (source) =>
          logger.debug({ cert: source }, 'OCSP: no responder in the certificate; nothing to fetch'),
      },
    });
    this.fetcher.start();
  }

  stop(): void {
    this.fetcher?.stop();
    this.fetcher = undefined;
  }
}
