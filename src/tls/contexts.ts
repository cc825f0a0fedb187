/**
 * From certificate material and a frontend's TLS settings to what node:tls needs: one
 * SecureContext per certificate, SNI lookup with wildcards, and the server options.
 */
import { constants, createHash } from 'node:crypto';
import { createSecureContext, type SecureContext, type TlsOptions } from 'node:tls';
import type { TlsProtocolName, TlsSettings } from '../config/model.js';
import { UnhitchError } from '../errors.js';
import type { CertificateMaterial } from './material.js';

/**
 * What a frontend's TLS layer is built from; a plain-data slice of the config model.
 * Client-certificate settings are not in it: each certificate carries its own.
 */
export interface FrontendTlsPolicy extends Omit<TlsSettings, 'clientVerify' | 'clientVerifyCa'> {
  readonly ecdhCurve: string;
  readonly alpnProtos: readonly string[];
  /** Offer global certificates too when the frontend has its own (Hitch's match-global-certs). */
  readonly matchGlobalCerts: boolean;
}

export class TlsPolicyError extends UnhitchError<'UNHITCH_TLS_POLICY'> {
  constructor(message: string) {
    super('UNHITCH_TLS_POLICY', message);
    this.name = 'TlsPolicyError';
  }
}

type NodeTlsVersion = 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';

const NODE_VERSION: Record<TlsProtocolName, NodeTlsVersion | undefined> = {
  SSLv3: undefined, // OpenSSL 3 as built into node cannot speak it at all
  'TLSv1.0': 'TLSv1',
  'TLSv1.1': 'TLSv1.1',
  'TLSv1.2': 'TLSv1.2',
  'TLSv1.3': 'TLSv1.3',
};
const ORDER: readonly NodeTlsVersion[] = ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'];

/** node:tls takes a version range; Hitch a list. A list with holes widens to its span. */
export function versionRange(protos: readonly TlsProtocolName[]): {
  minVersion: NodeTlsVersion;
  maxVersion: NodeTlsVersion;
} {
  const indexes = protos
    .map((name) => NODE_VERSION[name])
    .filter((version): version is NodeTlsVersion => version !== undefined)
    .map((version) => ORDER.indexOf(version));
  if (indexes.length === 0) {
    throw new TlsPolicyError(
      `tls-protos "${protos.join(' ')}" leaves no protocol node:tls supports`,
    );
  }
  return {
    minVersion: ORDER[Math.min(...indexes)] as NodeTlsVersion,
    maxVersion: ORDER[Math.max(...indexes)] as NodeTlsVersion,
  };
}

/** node:tls takes TLS 1.3 suites and the ≤1.2 cipher list in one string. */
function cipherString(policy: Pick<TlsSettings, 'ciphers' | 'ciphersuites'>): string {
  return [policy.ciphersuites, policy.ciphers].filter((part) => part.length > 0).join(':');
}

function contextOptions(policy: FrontendTlsPolicy) {
  // Old protocols need OpenSSL's security level 0 to offer their SHA-1 based ciphers.
  const range = versionRange(policy.tlsProtos);
  const legacy = range.minVersion === 'TLSv1' || range.minVersion === 'TLSv1.1';
  return {
    ...range,
    ciphers: legacy ? `${cipherString(policy)}:@SECLEVEL=0` : cipherString(policy),
    ecdhCurve: policy.ecdhCurve,
    honorCipherOrder: policy.preferServerCiphers,
    // TLS 1.2 client-initiated renegotiation is a CPU-exhaustion lever (a full handshake
    // on demand per connection); Hitch and HAProxy refuse it. node's OpenSSL 3 build
    // allows it (node only counts: tls.CLIENT_RENEG_LIMIT, 3 per 10 minutes), so OpenSSL
    // is told to answer every renegotiation ClientHello with a no_renegotiation alert.
    secureOptions: constants.SSL_OP_NO_RENEGOTIATION,
  };
}

function dnsMatchKeys(servername: string): string[] {
  const name = servername.toLowerCase().replace(/\.$/, '');
  const dot = name.indexOf('.');
  // A wildcard covers exactly one left-most label (RFC 6125 6.4.3).
  return dot > 0 ? [name, `*${name.slice(dot)}`] : [name];
}

interface NamedCertificate {
  readonly context: SecureContext;
  readonly material: CertificateMaterial;
}

/** The certificates one frontend offers, ready for SNI. */
export class CertificateSelector {
  readonly defaultCertificate: CertificateMaterial;
  /** One certificate: every SNI lookup ends at the default context anyway. */
  readonly single: boolean;
  readonly certificates: readonly CertificateMaterial[];
  private readonly byName = new Map<string, NamedCertificate>();

  constructor(ordered: readonly CertificateMaterial[], policy: FrontendTlsPolicy) {
    const last = ordered[ordered.length - 1];
    if (last === undefined) throw new TlsPolicyError('frontend has no certificate');
    // Hitch: the last pem-file given is the default certificate.
    this.defaultCertificate = last;
    this.single = ordered.length === 1;
    this.certificates = ordered;
    const options = contextOptions(policy);
    for (const material of ordered) {
      // node swaps in the SNI context's CA store and CA name list (TLSWrap::SetCACerts),
      // so the certificate's own client-verify-ca is what checks the client's certificate.
      const context = createSecureContext({
        ...options,
        key: material.key,
        cert: material.cert,
        ...(material.clientVerifyCa === undefined ? {} : { ca: material.clientVerifyCa }),
      });
      // Hitch: a name offered twice goes to the certificate loaded last (its SNI table
      // finds the newest entry); a frontend's own certificates come after the global ones
      // here, so they win over them, as Hitch tries the frontend's names first.
      for (const name of material.names) this.byName.set(name, { context, material });
    }
  }

  /** Context for an SNI name; exact names win over wildcards; undefined = no match. */
  select(servername: string): SecureContext | undefined {
    return this.lookup(servername)?.context;
  }

  /** The certificate an SNI name selects; undefined = no match. */
  selectCertificate(servername: string): CertificateMaterial | undefined {
    return this.lookup(servername)?.material;
  }

  private lookup(servername: string): NamedCertificate | undefined {
    for (const key of dnsMatchKeys(servername)) {
      const named = this.byName.get(key);
      if (named !== undefined) return named;
    }
    return undefined;
  }
}

/** A frontend's own certificates first, then the global ones where Hitch would use them. */
export function certificatesForFrontend(
  all: readonly CertificateMaterial[],
  frontendIndex: number,
  matchGlobalCerts: boolean,
): CertificateMaterial[] {
  const own = all.filter((material) => material.frontendIndex === frontendIndex);
  const global = all.filter((material) => material.frontendIndex === undefined);
  if (own.length === 0) return global;
  // Own certificates keep the default (the last own one): globals go in front of them.
  return matchGlobalCerts ? [...global, ...own] : own;
}

/**
 * tls.createServer options for a frontend. The SNI callback never throws into OpenSSL:
 * a lookup failure falls back to the default certificate unless sni-nomatch-abort, whose
 * refusal reaches the frontend's tlsClientError with code UNHITCH_SNI_NOMATCH.
 */
export function serverOptions(
  selector: CertificateSelector,
  policy: FrontendTlsPolicy,
  ticketKey: Buffer | undefined,
): TlsOptions {
  const options: TlsOptions = {
    ...contextOptions(policy),
    key: selector.defaultCertificate.key,
    cert: selector.defaultCertificate.cert,
    // Ticket lifetime (s): long enough that a client resumes across restarts and rotations.
    sessionTimeout: 7200,
  };
  // An SNICallback makes node pause every handshake (full and resumed) in OpenSSL's
  // certificate callback for a round trip into JS and, on a match, swap the SSL_CTX. With a
  // single certificate and no sni-nomatch-abort the answer is always the default context,
  // so that work is skipped.
  if (!selector.single || policy.sniNomatchAbort) {
    options.SNICallback = (servername, callback) => {
      let context: SecureContext | undefined;
      try {
        context = selector.select(servername);
      } catch {
        context = undefined;
      }
      if (context === undefined && policy.sniNomatchAbort) {
        const error = new UnhitchError(
          'UNHITCH_SNI_NOMATCH',
          `no certificate for SNI name "${servername}"`,
        );
        callback(error, undefined);
        return;
      }
      // undefined keeps the server's default context.
      callback(null, context);
    };
  }
  if (policy.alpnProtos.length > 0) options.ALPNProtocols = [...policy.alpnProtos];
  if (ticketKey !== undefined) options.ticketKeys = ticketKey;
  return options;
}

/**
 * A frontend's TLS servers. node's requestCert and rejectUnauthorized belong to the
 * tls.Server (applied when the connection is created, before SNI is known; an SNI
 * context brings its certificate and CA store but not a verify mode: nodejs/node#41211),
 * whereas Hitch 1.8 ties client-verify to the certificate SNI picks.
 * So a frontend gets one tls.Server per distinct client-certificate policy among its
 * certificates, each with its own session id context (a session made under one policy
 * never resumes under another, so a "none" ticket cannot skip a "required" check), and
 * the frontend reads the SNI name from the ClientHello before choosing the server (see
 * client-hello.ts). With one policy and no sni-nomatch-abort there is nothing to choose
 * and no peeking.
 */
export interface FrontendTlsPlan {
  /** tls.Server options, one per client-certificate policy; [0] has the default certificate's. */
  readonly servers: readonly TlsServerPlan[];
  /**
   * The index into `servers` for a ClientHello's SNI name, or undefined when
   * sni-nomatch-abort refuses the name. Absent when every handshake goes to servers[0].
   */
  readonly route: ((servername: string | undefined) => number | undefined) | undefined;
  /**
   * What every server of the frontend shares (protocol range, ciphers, ecdh-curve,
   * renegotiation refused), for a server built elsewhere: the ACME challenge server.
   */
  readonly context: TlsOptions;
}

export interface TlsServerPlan {
  readonly options: TlsOptions;
  /**
   * client-verify = optional: node accepts a client certificate that failed verification
   * (rejectUnauthorized false); the frontend must refuse it itself.
   */
  readonly rejectPresentedUnverified: boolean;
}

function policyKey(material: CertificateMaterial): string {
  if (material.clientVerify === 'none' || material.clientVerifyCa === undefined) return 'none';
  const ca = createHash('sha256').update(material.clientVerifyCa).digest('hex');
  return `${material.clientVerify}:${ca}`;
}

function clientCertificateOptions(material: CertificateMaterial): TlsOptions {
  if (material.clientVerify === 'none' || material.clientVerifyCa === undefined) return {};
  return {
    requestCert: true,
    // required: OpenSSL itself fails a handshake without a certificate
    // (SSL_VERIFY_FAIL_IF_NO_PEER_CERT), and node destroys one whose certificate does not
    // verify inside the handshake-done callback, before the server's last flight leaves.
    rejectUnauthorized: material.clientVerify === 'required',
    ca: material.clientVerifyCa,
  };
}

export function frontendTlsPlan(
  selector: CertificateSelector,
  policy: FrontendTlsPolicy,
  ticketKey: Buffer | undefined,
): FrontendTlsPlan {
  const serverIndex = new Map<string, number>();
  const servers: TlsServerPlan[] = [];
  const base = serverOptions(selector, policy, ticketKey);
  const serverFor = (material: CertificateMaterial): number => {
    const key = policyKey(material);
    const known = serverIndex.get(key);
    if (known !== undefined) return known;
    serverIndex.set(key, servers.length);
    servers.push({
      options: {
        ...base,
        ...clientCertificateOptions(material),
        sessionIdContext: createHash('sha256')
          .update(`unhitch client-verify ${key}`)
          .digest('hex')
          .slice(0, 32),
      },
      rejectPresentedUnverified: material.clientVerify === 'optional',
    });
    return servers.length - 1;
  };
  const defaultServer = serverFor(selector.defaultCertificate);
  for (const material of selector.certificates) serverFor(material);
  const context = contextOptions(policy);
  if (servers.length === 1 && !policy.sniNomatchAbort)
    return { servers, route: undefined, context };
  const route = (servername: string | undefined): number | undefined => {
    // Hitch's sni_switch_ctx: no SNI, or no match without sni-nomatch-abort, keeps the
    // default certificate (and so its policy).
    if (servername === undefined) return defaultServer;
    const material = selector.selectCertificate(servername);
    if (material !== undefined) return serverFor(material);
    return policy.sniNomatchAbort ? undefined : defaultServer;
  };
  // OpenSSL keeps the server's verify mode when the SNI callback swaps certificates: a
  // handshake that reached a server other than its name's (the frontend's ClientHello
  // peek gave up where OpenSSL did not) would get that certificate under the wrong
  // client-certificate policy. Each server's callback serves only its own certificates.
  const guarded = servers.map((server, index): TlsServerPlan => {
    const select = server.options.SNICallback;
    if (select === undefined || servers.length === 1) return server;
    const SNICallback: typeof select = (servername, callback) => {
      let routed: number | undefined;
      try {
        routed = route(servername);
      } catch {
        routed = defaultServer;
      }
      if (routed !== undefined && routed !== index) {
        const error = new UnhitchError(
          'UNHITCH_SNI_NOMATCH',
          `SNI name "${servername}" belongs to another client-certificate policy`,
        );
        callback(error, undefined);
        return;
      }
      select(servername, callback);
    };
    return { ...server, options: { ...server.options, SNICallback } };
  });
  return { servers: guarded, route, context };
}
