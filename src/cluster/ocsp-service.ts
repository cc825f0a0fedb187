/**
 * The primary's part in OCSP stapling: the services process fetches and checks (the
 * network and the DER parsing run there, as `user`); the primary tells it which
 * certificates to keep fresh (started with the workers, replaced after a reload, stopped
 * with the primary) and writes what it hands back into ocsp-dir. The primary never
 * parses a response: it writes the bytes, at most OCSP_RESPONSE_MAX_BYTES, at the cache
 * name of a certificate it asked for, so ocsp-dir keeps its owner and modes whoever
 * fetched.
 */
import type { Logger } from 'pino';
import type { ProxyConfig } from '../config/model.js';
import { logCode } from '../errors.js';
import type { CertificateMaterial } from '../tls/material.js';
import { OCSP_RESPONSE_MAX_BYTES, ocspDirCache, writeOcspResponse } from '../tls/ocsp-fetcher.js';
import type { OcspCertificate, OcspOrder, ServicesReport } from './messages.js';
import type { ServicesProcess } from './services-process.js';

interface Running {
  readonly config: ProxyConfig;
  readonly dir: string;
  readonly certificates: readonly CertificateMaterial[];
}

export class OcspService {
  private running: Running | undefined;

  constructor(
    private readonly logger: Logger,
    private readonly services: ServicesProcess,
  ) {
    services.on('unhitch:ocsp-response', (report) => this.save(report));
    // A restarted services process starts from what ocsp-dir holds now.
    services.onReady(() => this.send());
  }

  /** (Re)start for a generation; without ocsp-dir there is nothing to fetch. */
  start(config: ProxyConfig, certificates: readonly CertificateMaterial[]): void {
    const dir = config.ocspDir;
    this.running = dir === undefined ? undefined : { config, dir, certificates };
    this.send();
  }

  stop(): void {
    this.running = undefined;
    this.services.send({ type: 'unhitch:ocsp-stop' });
  }

  private send(): void {
    const running = this.running;
    if (running === undefined) {
      this.services.send({ type: 'unhitch:ocsp-stop' });
      return;
    }
    this.services.send({ type: 'unhitch:ocsp-start', order: orderFor(running) });
  }

  private save(report: Extract<ServicesReport, { type: 'unhitch:ocsp-response' }>): void {
    const running = this.running;
    let error: string | undefined;
    if (running === undefined || !running.certificates.some((c) => c.source === report.source))
      error = `no OCSP fetching for ${report.source} now`;
    else if (report.response.length > OCSP_RESPONSE_MAX_BYTES)
      error = `OCSP response larger than ${OCSP_RESPONSE_MAX_BYTES} bytes`;
    else {
      try {
        writeOcspResponse(running.dir, report.source, report.response);
      } catch (cause) {
        error = (cause as Error).message;
        logCode(this.logger, 'UNHITCH_OCSP_FETCH', { err: cause }, 'cannot store OCSP response');
      }
    }
    this.services.send({ type: 'unhitch:ocsp-saved', id: report.id, error });
  }
}

/** The order for the services process: public certificates and cached bytes, no keys. */
function orderFor(running: Running): OcspOrder {
  const seen = new Set<string>();
  const certificates: OcspCertificate[] = [];
  for (const material of running.certificates) {
    if (seen.has(material.source)) continue;
    seen.add(material.source);
    certificates.push({
      source: material.source,
      cert: material.cert,
      ocspVerifyStaple: material.ocspVerifyStaple,
      cached: readCached(running.dir, material.source),
    });
  }
  return {
    connectTimeoutMs: running.config.ocspConnectTimeoutMs,
    responseTimeoutMs: running.config.ocspResponseTimeoutMs,
    refreshIntervalMs: running.config.ocspRefreshIntervalMs,
    certificates,
  };
}

function readCached(dir: string, source: string): Buffer | undefined {
  const bytes = ocspDirCache(dir).read(source);
  return bytes !== undefined && bytes.length <= OCSP_RESPONSE_MAX_BYTES ? bytes : undefined;
}
