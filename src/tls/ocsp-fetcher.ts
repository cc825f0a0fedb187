/**
 * Keeps ocsp-dir filled, as Hitch's OCSP process does: for every certificate with an OCSP
 * responder in its AIA extension, fetch the response over HTTP, check it (ocsp.ts), write
 * it atomically to ocsp-dir/<md5 of the pem-file path>, and fetch again 10 minutes before
 * its nextUpdate (or every ocsp-refresh-interval when it has none). Workers staple what
 * they find in the directory (staples.ts). One fetcher for all workers: it runs in the
 * unprivileged services process (cluster/net-services.ts), which reads and writes the
 * cache through the root primary (`OcspCache`); `ocspDirCache` is the directory itself.
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

/** Where checked responses are kept: ocsp-dir, directly or through the primary. */
export interface OcspCache {
  /** The cached response for the certificate from pem-file `source`, if any. */
  read(source: string): Buffer | undefined;
  /** Keep a checked response; rejects when it cannot be kept. */
  write(source: string, response: Buffer): Promise<void>;
}

/** What fetching needs of a certificate (its private key is none of it). */
export type OcspSubject = Pick<CertificateMaterial, 'source' | 'cert' | 'ocspVerifyStaple'>;

export interface OcspFetcherOptions {
  readonly cache: OcspCache;
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
/** OCSP responses are a few KiB; a responder sending more is not one. */
export const OCSP_RESPONSE_MAX_BYTES = 1024 * 1024;

interface Target {
  readonly material: OcspSubject;
  readonly leaf: X509Certificate;
  readonly issuer: X509Certificate;
  readonly chain: readonly X509Certificate[];
  readonly url: string;
  failures: number;
  timer: NodeJS.Timeout | undefined;
}

export class OcspFetcher {
  private readonly targets: Target[] = [];
  private stopped = false;

  constructor(
    certificates: readonly OcspSubject[],
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
      const cached = this.options.cache.read(target.material.source);
      return cached === undefined ? undefined : this.check(target, cached);
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
      await this.options.cache.write(target.material.source, response);
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
            if (size > OCSP_RESPONSE_MAX_BYTES)
              fail(new OcspError('OCSP response larger than 1 MiB'));
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

/** ocsp-dir itself, read and written by this process. */
export function ocspDirCache(dir: string): OcspCache {
  return {
    read: (source) => {
      try {
        return readFileSync(join(dir, ocspCacheFileName(source)));
      } catch {
        return undefined;
      }
    },
    write: async (source, response) => writeOcspResponse(dir, source, response),
  };
}

/** Write-then-rename to Hitch's cache name, so a worker never reads half a response. */
export function writeOcspResponse(dir: string, source: string, response: Buffer): void {
  const path = join(dir, ocspCacheFileName(source));
  const temporary = `${path}.${process.pid}.tmp`;
  try {
    // World-readable: a response is public (any client gets it stapled), and the
    // primary writes as root while workers read as `user`. `wx`: a file (or symlink)
    // left at the temporary name is never written through.
    writeFileSync(temporary, response, { mode: 0o644, flag: 'wx' });
    renameSync(temporary, path);
  } catch (error) {
    try {
      unlinkSync(temporary);
    } catch {
      // nothing was written
    }
    throw new OcspError(
      `cannot write ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
}
