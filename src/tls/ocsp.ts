/**
 * OCSP for stapling, as Hitch's ocsp.c does it: the request for a certificate (CertID by
 * SHA-1 of the issuer's name and key), the responder URL from the certificate's AIA
 * extension, and the check of a response before it is stapled (successful, a
 * SingleResponse for this very certificate, and with ocsp-verify-staple a signature by
 * the issuer or by a responder the issuer delegated to, the issuer chaining to the CA
 * store: SSL_CERT_FILE when set, else the system's). ASN.1 comes from @peculiar/asn1-*,
 * signatures are checked with node:crypto.
 */
import { createHash, verify as verifySignature, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import {
  BasicOCSPResponse,
  CertID,
  id_pkix_ocsp_basic,
  OCSPRequest,
  OCSPResponse,
  OCSPResponseStatus,
  Request,
  TBSRequest,
} from '@peculiar/asn1-ocsp';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import {
  AlgorithmIdentifier,
  AuthorityInfoAccessSyntax,
  Certificate,
  ExtendedKeyUsage,
  id_ad_ocsp,
  id_ce_extKeyUsage,
  id_kp_OCSPSigning,
  id_pe_authorityInfoAccess,
} from '@peculiar/asn1-x509';
import { UnhitchError } from '../errors.js';

const SHA1_OID = '1.3.14.3.2.26';
/** Hitch refreshes this long before nextUpdate (ocsp.c: nextupd - now - 600). */
export const REFRESH_BEFORE_NEXT_UPDATE_MS = 600_000;

export class OcspError extends UnhitchError<'UNHITCH_OCSP_INVALID'> {
  constructor(message: string) {
    super('UNHITCH_OCSP_INVALID', message);
  }
}

export type OcspCertStatus = 'good' | 'revoked' | 'unknown';

export interface CheckedOcspResponse {
  readonly status: OcspCertStatus;
  readonly thisUpdate: Date;
  /** undefined: the responder gave none (Hitch then refreshes every ocsp-refresh-interval). */
  readonly nextUpdate: Date | undefined;
  /** RFC 5280 CRLReason name, e.g. keyCompromise, when the responder gave one. */
  readonly revocationReason?: string;
}

function toArrayBuffer(bytes: Buffer): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

function parseCertificate(der: Buffer): Certificate {
  return AsnConvert.parse(toArrayBuffer(der), Certificate);
}

/** The first OCSP responder URL in the certificate's authorityInfoAccess, if any. */
export function ocspResponderUrl(certificate: X509Certificate): string | undefined {
  const extension = parseCertificate(certificate.raw).tbsCertificate.extensions?.find(
    (ext) => ext.extnID === id_pe_authorityInfoAccess,
  );
  if (extension === undefined) return undefined;
  const access = AsnConvert.parse(extension.extnValue, AuthorityInfoAccessSyntax);
  return access.find((entry) => entry.accessMethod === id_ad_ocsp)?.accessLocation
    .uniformResourceIdentifier;
}

/** RFC 6960 CertID with SHA-1, the form every responder (and OpenSSL's) accepts. */
function certId(certificate: X509Certificate, issuer: X509Certificate): CertID {
  const issuerCert = parseCertificate(issuer.raw);
  const sha1 = (bytes: ArrayBuffer | Buffer) =>
    createHash('sha1')
      .update(Buffer.from(bytes as ArrayBuffer))
      .digest();
  return new CertID({
    hashAlgorithm: new AlgorithmIdentifier({ algorithm: SHA1_OID, parameters: null }),
    issuerNameHash: new OctetString(sha1(AsnConvert.serialize(issuerCert.tbsCertificate.subject))),
    issuerKeyHash: new OctetString(
      sha1(issuerCert.tbsCertificate.subjectPublicKeyInfo.subjectPublicKey),
    ),
    serialNumber: parseCertificate(certificate.raw).tbsCertificate.serialNumber,
  });
}

export function ocspRequest(certificate: X509Certificate, issuer: X509Certificate): Buffer {
  const request = new OCSPRequest({
    tbsRequest: new TBSRequest({
      requestList: [new Request({ reqCert: certId(certificate, issuer) })],
    }),
  });
  return Buffer.from(AsnConvert.serialize(request));
}

function sameBytes(a: ArrayBuffer | Buffer, b: ArrayBuffer | Buffer): boolean {
  return Buffer.from(a as ArrayBuffer).equals(Buffer.from(b as ArrayBuffer));
}

function sameCertId(a: CertID, b: CertID): boolean {
  return (
    a.hashAlgorithm.algorithm === b.hashAlgorithm.algorithm &&
    sameBytes(a.issuerNameHash.buffer, b.issuerNameHash.buffer) &&
    sameBytes(a.issuerKeyHash.buffer, b.issuerKeyHash.buffer) &&
    sameBytes(a.serialNumber, b.serialNumber)
  );
}

/** Signature algorithm OID → the digest node:crypto.verify takes (null: EdDSA). */
const SIGNATURE_DIGESTS: Readonly<Record<string, string | null>> = {
  '1.2.840.113549.1.1.5': 'sha1',
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.2.840.10045.4.1': 'sha1',
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.3.101.112': null,
  '1.3.101.113': null,
};

export interface OcspCheckOptions {
  /** ocsp-verify-staple: check the signature and the signer's chain to `trusted`. */
  readonly verify: boolean;
  /** The CA store (see loadCaStore). */
  readonly trusted: readonly X509Certificate[];
  /** Certificates from the pem-file after the leaf (Hitch's chain). */
  readonly chain: readonly X509Certificate[];
}

/**
 * Parse a DER OCSP response for `certificate` and check it as Hitch's HOCSP_verify does.
 * Throws OcspError with the reason when it must not be stapled.
 */
export function checkOcspResponse(
  response: Buffer,
  certificate: X509Certificate,
  issuer: X509Certificate,
  options: OcspCheckOptions,
): CheckedOcspResponse {
  let outer: OCSPResponse;
  let basic: BasicOCSPResponse;
  try {
    outer = AsnConvert.parse(toArrayBuffer(response), OCSPResponse);
    if (outer.responseStatus !== OCSPResponseStatus.successful) {
      throw new OcspError(`OCSP response status is ${OCSPResponseStatus[outer.responseStatus]}`);
    }
    if (outer.responseBytes?.responseType !== id_pkix_ocsp_basic) {
      throw new OcspError('OCSP response is not a basic response');
    }
    basic = AsnConvert.parse(outer.responseBytes.response.buffer, BasicOCSPResponse);
  } catch (error) {
    if (error instanceof OcspError) throw error;
    throw new OcspError(`OCSP response does not parse: ${(error as Error).message}`);
  }
  const wanted = certId(certificate, issuer);
  const single = basic.tbsResponseData.responses.find((entry) => sameCertId(entry.certID, wanted));
  if (single === undefined) {
    throw new OcspError('OCSP response has no answer for this certificate');
  }
  if (options.verify) verifyBasicResponse(basic, issuer, options);
  const status: OcspCertStatus =
    single.certStatus.good !== undefined
      ? 'good'
      : single.certStatus.revoked !== undefined
        ? 'revoked'
        : 'unknown';
  return {
    status,
    thisUpdate: single.thisUpdate,
    nextUpdate: single.nextUpdate,
    ...(single.certStatus.revoked?.revocationReason === undefined
      ? {}
      : { revocationReason: single.certStatus.revoked.revocationReason.toString() }),
  };
}

function verifyBasicResponse(
  basic: BasicOCSPResponse,
  issuer: X509Certificate,
  options: OcspCheckOptions,
): void {
  const responder = basic.tbsResponseData.responderID;
  const included = (basic.certs ?? []).map(
    (cert) => new X509Certificate(Buffer.from(AsnConvert.serialize(cert))),
  );
  const matchesResponder = (candidate: X509Certificate): boolean => {
    const parsed = parseCertificate(candidate.raw).tbsCertificate;
    if (responder.byName !== undefined) {
      return sameBytes(
        AsnConvert.serialize(parsed.subject),
        AsnConvert.serialize(responder.byName),
      );
    }
    if (responder.byKey !== undefined) {
      const keyHash = createHash('sha1')
        .update(Buffer.from(parsed.subjectPublicKeyInfo.subjectPublicKey))
        .digest();
      return keyHash.equals(Buffer.from(responder.byKey.buffer));
    }
    return false;
  };
  const signer = [issuer, ...included].find(matchesResponder);
  if (signer === undefined) throw new OcspError('OCSP responder certificate not found');
  if (signer !== issuer) {
    // A delegated responder: issued by the certificate's issuer for OCSP signing.
    if (!signer.checkIssued(issuer) || !signer.verify(issuer.publicKey)) {
      throw new OcspError('OCSP responder certificate is not issued by the certificate issuer');
    }
    if (!hasOcspSigning(signer)) {
      throw new OcspError('OCSP responder certificate lacks the OCSPSigning key usage');
    }
  }
  const digest = SIGNATURE_DIGESTS[basic.signatureAlgorithm.algorithm];
  if (digest === undefined) {
    throw new OcspError(
      `unsupported OCSP signature algorithm ${basic.signatureAlgorithm.algorithm}`,
    );
  }
  const signed = basic.tbsResponseDataRaw ?? AsnConvert.serialize(basic.tbsResponseData);
  if (
    !verifySignature(digest, Buffer.from(signed), signer.publicKey, Buffer.from(basic.signature))
  ) {
    throw new OcspError('OCSP response signature does not verify');
  }
  if (!chainsToTrusted(issuer, options)) {
    throw new OcspError(
      `issuer ${issuer.subject.replace(/\n/g, ', ')} is not trusted by the CA store`,
    );
  }
}

function hasOcspSigning(certificate: X509Certificate): boolean {
  const extension = parseCertificate(certificate.raw).tbsCertificate.extensions?.find(
    (ext) => ext.extnID === id_ce_extKeyUsage,
  );
  if (extension === undefined) return false;
  return AsnConvert.parse(extension.extnValue, ExtendedKeyUsage).includes(id_kp_OCSPSigning);
}

/** Does `certificate` chain (via the pem-file's chain) to a certificate of the store? */
export function chainsToTrusted(
  certificate: X509Certificate,
  options: Pick<OcspCheckOptions, 'trusted' | 'chain'>,
): boolean {
  let current = certificate;
  for (let depth = 0; depth < 8; depth++) {
    if (options.trusted.some((root) => root.raw.equals(current.raw))) return true;
    const anchor = options.trusted.find(
      (root) => current.checkIssued(root) && current.verify(root.publicKey),
    );
    if (anchor !== undefined) return true;
    const next = options.chain.find(
      (cert) =>
        !cert.raw.equals(current.raw) &&
        current.checkIssued(cert) &&
        current.verify(cert.publicKey),
    );
    if (next === undefined) return false;
    current = next;
  }
  return false;
}

/** Every certificate of a PEM chain, leaf first. */
export function certificateChain(pem: Buffer): X509Certificate[] {
  const text = pem.toString('latin1');
  return [...text.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map(
    (match) => new X509Certificate(match[0]),
  );
}

/** The certificate among `chain` that issued `certificate` (Hitch's Find_issuer). */
export function findIssuer(
  certificate: X509Certificate,
  chain: readonly X509Certificate[],
): X509Certificate | undefined {
  return chain.find((cert) => certificate.checkIssued(cert) && certificate.verify(cert.publicKey));
}

const SYSTEM_CA_FILE = '/etc/ssl/certs/ca-certificates.crt';

/** Set by pinCaStore: what every later loadCaStore() of this process returns (or throws). */
let pinned: { readonly store: X509Certificate[] } | { readonly error: unknown } | undefined;

/**
 * A worker, before it drops root: read the CA store now, while SSL_CERT_FILE may still be
 * readable only by root (as the keys are), and make every later loadCaStore() in this
 * process answer with it. A worker lives one generation, so nothing goes stale: a reload
 * starts new workers, which read the store again.
 */
export function pinCaStore(): void {
  try {
    pinned = { store: loadCaStore() };
  } catch (error) {
    pinned = { error };
  }
}

/**
 * The CA store OpenSSL would use: SSL_CERT_FILE when set (as SSL_CTX_set_default_verify_paths
 * honours it), else the system bundle, else node's built-in roots.
 */
export function loadCaStore(env: NodeJS.ProcessEnv = process.env): X509Certificate[] {
  if (pinned !== undefined && env === process.env) {
    if ('error' in pinned) throw pinned.error;
    return pinned.store;
  }
  const file = env.SSL_CERT_FILE;
  let text: string;
  if (file !== undefined && file !== '') {
    try {
      text = readFileSync(file, 'latin1');
    } catch (error) {
      throw new OcspError(
        `SSL_CERT_FILE ${file} cannot be read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      );
    }
  } else {
    try {
      text = readFileSync(SYSTEM_CA_FILE, 'latin1');
    } catch {
      text = rootCertificates.join('\n');
    }
  }
  const certificates: X509Certificate[] = [];
  for (const match of text.matchAll(
    /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g,
  )) {
    try {
      certificates.push(new X509Certificate(match[0]));
    } catch {
      // An unparsable entry in a system bundle is not ours to fail on.
    }
  }
  return certificates;
}

/** Hitch's cache file name for a certificate: ocsp-dir / md5(pem-file path) in hex. */
export function ocspCacheFileName(certPath: string): string {
  return createHash('md5').update(certPath).digest('hex');
}
