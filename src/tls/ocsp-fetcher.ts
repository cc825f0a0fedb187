/**
 * Keeps ocsp-dir filled, as Hitch's OCSP process does: for every certificate with an OCSP
 * responder in its AIA extension, fetch the response over HTTP, check it (ocsp.ts), write
 * it atomically to ocsp-dir/<md5 of the pem-file path>, and fetch again 10 minutes before
 * its nextUpdate (or every ocsp-refresh-interval when it has none). Workers staple what
 * they find in the directory (staples.ts). Runs in the primary only: one fetch per
 * certificate however many workers there are.
 */
import type { X509Certificate } from 'node:crypto';
import { readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import type { CertificateMaterial } from './material.js';
import {
  type CheckedOcspResponse,
  certificateChain,
  checkOcspResponse,
  findIssuer,
  OcspError,
  ocspCacheFileName,
  ocspRequest,
  ocspResponderUrl,
  REFRESH_BEFORE_NEXT_UPDATE_MS,
} from './ocsp.js';

export interface OcspFetcherOptions {
  readonly dir: string;
  readonly connectTimeoutMs: number;
  readonly responseTimeoutMs: number;
  /** Refresh period for a response without nextUpdate (ocsp-refresh-interval). */
  readonly refreshIntervalMs: number;
  /** First retry after a failed fetch; doubles per failure up to retryMaxMs. */
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
  readonly trusted: readonly X509Certificate[];
  readonly events: OcspFetcherEvents;
}

export interface OcspFetcherEvents {
  fetched(source: string, url: string, checked: CheckedOcspResponse, nextFetchMs: number): void;
  failed(source: string, url: string, error: Error, attempt: number, retryMs: number): void;
  /** No OCSP responder in the certificate: nothing to staple (Hitch logs a note). */
  noResponder(source: string): void;
}

/** Hitch's defaults: retry after 60 s (300 s when the responder cannot be reached). */
export const OCSP_RETRY_BASE_MS = 60_000;
export const OCSP_RETRY_MAX_MS = 3_600_000;

interface Target {
  readonly material: CertificateMaterial;
  readonly leaf: X509Certificate;
  readonly issuer: X509Certificate;
  readonly chain: readonly X509Certificate[];
  readonly url: string;
  readonly cachePath: string;
  failures: number;
  timer: NodeJS.Timeout | undefined;
}

export class OcspFetcher {
  private readonly targets: Target[] = [];
  private stopped = false;

  constructor(
    certificates: readonly CertificateMaterial[],
    private readonly options: OcspFetcherOptions,
  ) {
    const seen = new Set<string>();
    for (const material of certificates) {
      if (seen.has(material.source)) continue;
      seen.add(material.source);
      const [leaf, ...chain] = certificateChain(material.cert);
      if (leaf === undefined) continue;
      const url = ocspResponderUrl(leaf);
      const issuer = findIssuer(leaf, chain);
      if (url === undefined || issuer === undefined) {
        options.events.noResponder(material.source);
        continue;
      }
      this.targets.push({
        material,
        leaf,
        issuer,
        chain,
        url,
        cachePath: join(options.dir, ocspCacheFileName(material.source)),
        failures: 0,
        timer: undefined,
      });
    }
  }

  /** Schedule every certificate: from its cached response's nextUpdate, else at once. */
  start(): void {
    for (const target of this.targets) {
      const cached = this.cachedResponse(target);
      this.schedule(target, cached === undefined ? 0 : this.nextFetchDelay(cached));
    }
  }

  stop(): void {
    this.stopped = true;
    for (const target of this.targets) clearTimeout(target.timer);
  }

  private cachedResponse(target: Target): CheckedOcspResponse | undefined {
    try {
      return this.check(target, readFileSync(target.cachePath));
    } catch {
      return undefined; // none yet, or stale/invalid: fetch
    }
  }

  private check(target: Target, response: Buffer): CheckedOcspResponse {
    return checkOcspResponse(response, target.leaf, target.issuer, {
      verify: target.material.ocspVerifyStaple,
      trusted: this.options.trusted,
      chain: target.chain,
    });
  }

  /** Hitch: 10 minutes before nextUpdate, or the refresh interval; never a busy loop. */
  private nextFetchDelay(checked: CheckedOcspResponse): number {
    const delay =
      checked.nextUpdate === undefined
        ? this.options.refreshIntervalMs
        : checked.nextUpdate.getTime() - Date.now() - REFRESH_BEFORE_NEXT_UPDATE_MS;
    return Math.max(delay, this.options.retryBaseMs);
  }

  private schedule(target: Target, delayMs: number): void {
    if (this.stopped) return;
    clearTimeout(target.timer);
    target.timer = setTimeout(() => void this.fetch(target), delayMs);
    target.timer.unref();
  }

  private async fetch(target: Target): Promise<void> {
    try {
      const response = await this.post(target.url, ocspRequest(target.leaf, target.issuer));
      const checked = this.check(target, response);
      this.persist(target, response);
      target.failures = 0;
      const next = this.nextFetchDelay(checked);
      this.options.events.fetched(target.material.source, target.url, checked, next);
      this.schedule(target, next);
    } catch (error) {
      target.failures += 1;
      const retry = Math.min(
        this.options.retryBaseMs * 2 ** (target.failures - 1),
        this.options.retryMaxMs,
      );
      this.options.events.failed(
        target.material.source,
        target.url,
        error as Error,
        target.failures,
        retry,
      );
      this.schedule(target, retry);
    }
  }

  /** Write-then-rename, so a worker never reads half a response. */
  private persist(target: Target, response: Buffer): void {
    const temporary = `${target.cachePath}.${process.pid}.tmp`;
    try {
      // World-readable: a response is public (any client gets it stapled), and the
      // primary may write as root while workers read as `user`.
      writeFileSync(temporary, response, { mode: 0o644 });
      renameSync(temporary, target.cachePath);
    } catch (error) {
      try {
        unlinkSync(temporary);
      } catch {
        // nothing was written
      }
      throw new OcspError(
        `cannot write ${target.cachePath}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      );
    }
  }

  /** POST application/ocsp-request with Hitch's two timeouts (connect, then response). */
  private post(url: string, body: Buffer): Promise<Buffer> {
    const { connectTimeoutMs, responseTimeoutMs } = this.options;
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const fail = (error: Error): void => {
        clearTimeout(timer);
        req.destroy();
        reject(error);
      };
      // Hitch's OCSP_parse_url takes both; responders are plain HTTP in practice.
      const request = url.startsWith('https:') ? httpsRequest : httpRequest;
      const req = request(
        url,
        {
          // A fresh connection each time: the connect timeout waits for its 'connect',
          // which a kept-alive socket from the agent's pool would never emit.
          agent: false,
          method: 'POST',
          headers: { 'content-type': 'application/ocsp-request', 'content-length': body.length },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            // OCSP responses are a few KiB; a responder sending more is not one.
            if (size > 1024 * 1024) fail(new OcspError('OCSP response larger than 1 MiB'));
            else chunks.push(chunk);
          });
          res.on('end', () => {
            clearTimeout(timer);
            if (res.statusCode !== 200) {
              reject(new OcspError(`OCSP responder answered HTTP ${res.statusCode}`));
            } else resolve(Buffer.concat(chunks));
          });
          res.on('error', fail);
        },
      );
      req.on('error', fail);
      timer = setTimeout(
        () => fail(new OcspError(`no connection within ocsp-connect-tmo (${connectTimeoutMs} ms)`)),
        connectTimeoutMs,
      );
      req.on('socket', (socket) => {
        socket.once('connect', () => {
          clearTimeout(timer);
          timer = setTimeout(
            () => fail(new OcspError(`no response within ocsp-resp-tmo (${responseTimeoutMs} ms)`)),
            responseTimeoutMs,
          );
        });
      });
      req.end(body);
    });
  }
}
