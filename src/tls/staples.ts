/**
 * What a worker staples: per certificate, the response from ocsp-dir (kept fresh by the
 * primary's OcspFetcher and re-read when its file changes, as Hitch's workers watch
 * theirs) or else the pem-file's static ocsp-resp-file. A response is checked before it
 * is used and never stapled past its nextUpdate.
 */
import { createHash, type X509Certificate } from 'node:crypto';
import { type FSWatcher, readFileSync, watch } from 'node:fs';
import { join } from 'node:path';
import type { CertificateMaterial } from './material.js';
import {
  certificateChain,
  checkOcspResponse,
  findIssuer,
  ocspCacheFileName,
  ocspResponderUrl,
} from './ocsp.js';

interface Staple {
  readonly response: Buffer;
  /** ms since epoch; undefined = no nextUpdate. */
  readonly nextUpdate: number | undefined;
}

interface Entry {
  readonly material: CertificateMaterial;
  readonly leaf: X509Certificate;
  readonly issuer: X509Certificate | undefined;
  readonly chain: readonly X509Certificate[];
  staple: Staple | undefined;
}

export interface StapleEvents {
  loaded(source: string, status: string, from: string): void;
  rejected(source: string, from: string, error: Error): void;
}

function fingerprint(der: Buffer): string {
  return createHash('sha256').update(der).digest('hex');
}

export class StapleStore {
  private readonly byFingerprint = new Map<string, Entry>();
  private readonly byCacheName = new Map<string, Entry>();
  private watcher: FSWatcher | undefined;
  /**
   * Certificates that can ever have a staple (a static response, or an OCSP responder to
   * fetch from). With none, the frontend registers no OCSPRequest listener: node would
   * otherwise call into JS on every handshake whose client asks for status.
   */
  private stapleableCount = 0;

  constructor(
    certificates: readonly CertificateMaterial[],
    private readonly ocspDir: string | undefined,
    private readonly trusted: readonly X509Certificate[],
    private readonly events: StapleEvents,
  ) {
    for (const material of certificates) {
      const [leaf, ...chain] = certificateChain(material.cert);
      if (leaf === undefined || this.byFingerprint.has(fingerprint(leaf.raw))) continue;
      const entry: Entry = {
        material,
        leaf,
        issuer: findIssuer(leaf, chain),
        chain,
        staple: undefined,
      };
      this.byFingerprint.set(fingerprint(leaf.raw), entry);
      if (
        material.ocspResponse !== undefined ||
        (ocspDir !== undefined &&
          entry.issuer !== undefined &&
          ocspResponderUrl(leaf) !== undefined)
      ) {
        this.stapleableCount += 1;
      }
      if (ocspDir !== undefined) this.byCacheName.set(ocspCacheFileName(material.source), entry);
      // Hitch: a cached ocsp-dir response first, else the static ocsp-resp-file.
      if (!this.loadCached(entry) && material.ocspResponse !== undefined) {
        this.use(entry, material.ocspResponse, 'ocsp-resp-file');
      }
    }
  }

  /** Re-read a certificate's cache file whenever the primary replaces it. */
  watch(): void {
    if (this.ocspDir === undefined || this.byCacheName.size === 0) return;
    try {
      this.watcher = watch(this.ocspDir, (_event, name) => {
        const entry = name === null ? undefined : this.byCacheName.get(String(name));
        if (entry !== undefined) this.loadCached(entry);
      });
      this.watcher.on('error', () => this.close());
    } catch {
      // No directory (yet): nothing cached to staple; the fetcher logs why.
      return;
    }
    // A response written between the constructor's read and the watch would wait for
    // the next refresh (up to an hour): read again now that no change can be missed.
    for (const entry of this.byCacheName.values()) this.loadCached(entry);
  }

  get stapleable(): number {
    return this.stapleableCount;
  }

  close(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }

  /** The response to staple for a certificate (DER, as node's OCSPRequest event gives it). */
  stapleFor(certificateDer: Buffer): Buffer | undefined {
    const staple = this.byFingerprint.get(fingerprint(certificateDer))?.staple;
    if (staple === undefined) return undefined;
    // Hitch's HOCSP_staple_cb: an expired response is not sent.
    if (staple.nextUpdate !== undefined && staple.nextUpdate < Date.now()) return undefined;
    return staple.response;
  }

  private loadCached(entry: Entry): boolean {
    if (this.ocspDir === undefined) return false;
    const path = join(this.ocspDir, ocspCacheFileName(entry.material.source));
    let response: Buffer;
    try {
      response = readFileSync(path);
    } catch {
      return false;
    }
    // The same bytes again (a second fs event for one rename, the re-read after watch()).
    if (entry.staple?.response.equals(response)) return true;
    return this.use(entry, response, path);
  }

  private use(entry: Entry, response: Buffer, from: string): boolean {
    if (entry.issuer === undefined) {
      this.events.rejected(entry.material.source, from, new Error('issuer not in the pem-file'));
      return false;
    }
    try {
      const checked = checkOcspResponse(response, entry.leaf, entry.issuer, {
        verify: entry.material.ocspVerifyStaple,
        trusted: this.trusted,
        chain: entry.chain,
      });
      entry.staple = { response, nextUpdate: checked.nextUpdate?.getTime() };
      this.events.loaded(entry.material.source, checked.status, from);
      return true;
    } catch (error) {
      // Never staple what does not check; a previous good staple stays until it expires.
      this.events.rejected(entry.material.source, from, error as Error);
      return false;
    }
  }
}
