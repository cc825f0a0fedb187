/**
 * Certificate material: read every pem-file the config names, split Hitch's combined
 * PEM (key + chain) or pair cert + private-key, check key and certificate belong
 * together, and note the DNS names each certificate answers for (SNI).
 *
 * Runs in the primary before privileges are dropped; workers get the bytes over IPC, so
 * a private key readable only by root still works after the drop (as with Hitch).
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { ConfigError } from '../config/errors.js';
import type { ClientVerifyMode, PemFileConfig, ProxyConfig, TlsSettings } from '../config/model.js';
import { pemPosition } from '../config/pem-positions.js';
import { strerror } from '../net/strerror.js';
import {
  certificateChain,
  chainsToTrusted,
  checkOcspResponse,
  findIssuer,
  loadCaStore,
  ocspResponderUrl,
} from './ocsp.js';
import { globalPemFiles, pemDirFiles } from './pem-dir.js';

export interface CertificateMaterial {
  /** The pem-file path, for messages. */
  readonly source: string;
  /** PEM certificate chain, leaf first. */
  readonly cert: Buffer;
  /** PEM private key. */
  readonly key: Buffer;
  /** Lower-case DNS names (SAN, else CN); wildcards kept as `*.example.com`. */
  readonly names: readonly string[];
  readonly ocspResponse: Buffer | undefined;
  /** Index into `config.frontends` for a frontend's own pem-file; undefined = global. */
  readonly frontendIndex: number | undefined;
  /** Client certificates for handshakes that pick this certificate (by SNI or default). */
  readonly clientVerify: ClientVerifyMode;
  /** PEM bundle client certificates must chain to; undefined exactly when clientVerify is none. */
  readonly clientVerifyCa: Buffer | undefined;
  /** ocsp-verify-staple for this certificate (its pem-file block, else the global value). */
  readonly ocspVerifyStaple: boolean;
}

/** The client-verify settings a pem-file inherits when its block sets none of its own. */
type ClientVerifyScope = Pick<TlsSettings, 'clientVerify' | 'clientVerifyCa'> & {
  readonly ocspVerifyStaple?: boolean;
};

/**
 * The certificate an acme block adds (acme/store.ts owns it); `needed`: no other global
 * certificate could serve, so a placeholder is asked for when nothing is stored yet.
 */
export type AcmeCertificateSource = (needed: boolean) => CertificateMaterial | undefined;

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]+?-----END \1-----\r?\n?/g;

export function loadCertificates(
  config: ProxyConfig,
  warn: (message: string) => void = () => {},
  acme?: AcmeCertificateSource,
): CertificateMaterial[] {
  const loaded: CertificateMaterial[] = [];
  const caBundles = new Map<string, Buffer>();
  // As Hitch: a frontend's client-verify applies to its own pem-files only; global
  // pem-files (also when a frontend offers them) keep the global setting.
  const dirFiles = config.pemDir === undefined ? [] : pemDirFiles(config.pemDir, config.pemDirGlob);
  const globals = globalPemFiles(config.pemFiles, dirFiles);
  // The ACME certificate is a global one, in front of the pem-files: Hitch's default (the
  // last pem-file) stays the default, and SNI finds the ACME names as it finds any other.
  if (config.acme !== undefined) {
    if (acme === undefined) throw new Error('loadCertificates: an acme block needs its source');
    const material = acme(globals.length === 0);
    if (material !== undefined) loaded.push(material);
  }
  for (const pem of globals) {
    loaded.push(
      loadPemFile(
        pem,
        undefined,
        warn,
        { ...config.tls, ocspVerifyStaple: config.ocspVerifyStaple },
        caBundles,
      ),
    );
  }
  config.frontends.forEach((frontend, index) => {
    for (const pem of frontend.pemFiles) {
      loaded.push(
        loadPemFile(
          pem,
          index,
          warn,
          { ...frontend, ocspVerifyStaple: config.ocspVerifyStaple },
          caBundles,
        ),
      );
    }
  });
  if (loaded.length === 0) {
    throw new ConfigError('UNHITCH_CONFIG_MISSING', `${config.source}: no pem-file configured`);
  }
  checkStapling(loaded, config, warn);
  warnOverriddenNames(loaded, config.frontends.length, warn);
  const hasGlobal = loaded.some((material) => material.frontendIndex === undefined);
  const bare = config.frontends.find((frontend) => frontend.pemFiles.length === 0);
  if (!hasGlobal && bare !== undefined) {
    const where =
      config.pemDir === undefined ? '' : ` (pem-dir ${config.pemDir} has no file to load)`;
    throw new ConfigError(
      'UNHITCH_CONFIG_MISSING',
      `no certificate for frontend [${bare.address.host ?? '*'}]:${bare.address.port}${where}`,
    );
  }
  return loaded;
}

export function loadPemFile(
  pem: PemFileConfig,
  frontendIndex: number | undefined,
  warn: (message: string) => void,
  inherited: ClientVerifyScope = { clientVerify: 'none', clientVerifyCa: undefined },
  caBundles: Map<string, Buffer> = new Map(),
): CertificateMaterial {
  const certText = readConfiguredPem(pem, pem.certPath);
  const keyText =
    pem.privateKeyPath === undefined ? certText : readConfiguredPem(pem, pem.privateKeyPath);
  const keyPath = pem.privateKeyPath ?? pem.certPath;
  warnIfReadableByOthers(keyPath, warn);

  const certificates = blocks(certText).filter((block) => block.label === 'CERTIFICATE');
  const keys = blocks(keyText).filter((block) => block.label.endsWith('PRIVATE KEY'));
  if (certificates.length === 0) {
    throw fileError(
      pem.certPath,
      'holds no PEM certificate',
      'a -----BEGIN CERTIFICATE----- block',
    );
  }
  if (keys.length !== 1) {
    throw fileError(
      keyPath,
      keys.length === 0 ? 'holds no PEM private key' : `holds ${keys.length} private keys`,
      'exactly one -----BEGIN PRIVATE KEY----- block',
    );
  }
  const cert = Buffer.from(certificates.map((block) => block.text).join(''));
  const key = Buffer.from((keys[0] as PemBlock).text);

  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch (err) {
    throw fileError(pem.certPath, `certificate does not parse: ${(err as Error).message}`);
  }
  let keyMatches: boolean;
  try {
    keyMatches = leaf.checkPrivateKey(createPrivateKey(key));
  } catch (err) {
    throw fileError(keyPath, `private key does not parse: ${(err as Error).message}`);
  }
  if (!keyMatches)
    throw fileError(keyPath, `private key does not match the certificate in ${pem.certPath}`);
  if (Date.parse(leaf.validTo) < Date.now())
    warn(`${pem.certPath}: certificate expired on ${leaf.validTo}`);

  const ocspResponse =
    pem.ocspResponsePath === undefined ? undefined : readFileOrThrow(pem.ocspResponsePath);
  return {
    source: pem.certPath,
    cert,
    key,
    names: certificateNames(leaf),
    ocspResponse,
    frontendIndex,
    ...clientVerifyFor(pem, inherited, caBundles),
    ocspVerifyStaple: pem.ocspVerifyStaple ?? inherited.ocspVerifyStaple ?? false,
  };
}

function clientVerifyFor(
  pem: PemFileConfig,
  inherited: ClientVerifyScope,
  caBundles: Map<string, Buffer>,
): Pick<CertificateMaterial, 'clientVerify' | 'clientVerifyCa'> {
  const clientVerify = pem.clientVerify ?? inherited.clientVerify;
  if (clientVerify === 'none') return { clientVerify, clientVerifyCa: undefined };
  const caPath = pem.clientVerifyCa ?? inherited.clientVerifyCa;
  if (caPath === undefined) {
    // Hitch: "For settings optional and required, we also require that the
    // client-verify-ca is configured."
    throw new ConfigError(
      'UNHITCH_CONFIG_MISSING',
      `${pem.certPath}: client-verify = ${clientVerify} needs client-verify-ca`,
      undefined,
      'client-verify-ca = "CA-BUNDLE.pem" next to client-verify',
    );
  }
  let bundle = caBundles.get(caPath);
  if (bundle === undefined) {
    bundle = loadCaBundle(caPath);
    caBundles.set(caPath, bundle);
  }
  return { clientVerify, clientVerifyCa: bundle };
}

/** The CERTIFICATE blocks of a CA file, each checked to parse. */
export function loadCaBundle(path: string): Buffer {
  const certificates = blocks(readPem(path)).filter((block) => block.label === 'CERTIFICATE');
  if (certificates.length === 0) {
    throw fileError(path, 'holds no PEM certificate', 'a -----BEGIN CERTIFICATE----- block');
  }
  for (const block of certificates) {
    try {
      new X509Certificate(block.text);
    } catch (err) {
      throw fileError(path, `CA certificate does not parse: ${(err as Error).message}`);
    }
  }
  return Buffer.from(certificates.map((block) => block.text).join(''));
}

interface PemBlock {
  readonly label: string;
  readonly text: string;
}

function blocks(text: string): PemBlock[] {
  return [...text.matchAll(PEM_BLOCK)].map((match) => ({
    label: match[1] as string,
    text: match[0].endsWith('\n') ? match[0] : `${match[0]}\n`,
  }));
}

/** SAN DNS names when present (RFC 6125: then CN is ignored), else the subject CN. */
export function certificateNames(certificate: X509Certificate): string[] {
  const san = certificate.subjectAltName;
  if (san) {
    const names = san
      .split(/,\s*/)
      .filter((entry) => entry.startsWith('DNS:'))
      .map((entry) => entry.slice(4).toLowerCase());
    if (names.length > 0) return names;
  }
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(certificate.subject)?.[1];
  return cn ? [cn.toLowerCase()] : [];
}

/**
 * A pem-file's certificate or key: one that cannot be read names the config file and line
 * the pem-file came from, as Hitch's cfg_cert_vfy does.
 */
function readConfiguredPem(pem: PemFileConfig, path: string): string {
  try {
    return readFileSync(path).toString('latin1');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new ConfigError(
      'UNHITCH_CONFIG_FILE',
      `unable to read x509 certificate PEM file '${path}': ${strerror(code)} (${code})`,
      pemPosition(pem),
    );
  }
}

function readPem(path: string): string {
  return readFileOrThrow(path).toString('latin1');
}

function readFileOrThrow(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw fileError(
      path,
      `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
}

function warnIfReadableByOthers(path: string, warn: (message: string) => void): void {
  try {
    const mode = statSync(path).mode;
    if ((mode & 0o077) !== 0) {
      warn(
        `${path}: private key is readable by group or others (mode ${(mode & 0o777).toString(8)}); chmod 600 it`,
      );
    }
  } catch {
    // Unreadable files fail loudly when read; nothing to add here.
  }
}

function fileError(path: string, message: string, expected?: string): ConfigError {
  return new ConfigError('UNHITCH_CONFIG_FILE', `${path}: ${message}`, undefined, expected);
}

/**
 * What Hitch checks of stapling when it starts (and so what --test checks): a static
 * ocsp-resp-file must be a response for its certificate, and with ocsp-verify-staple one
 * the CA store verifies (hitch.c make_ctx_fr: HOCSP_init_file(ocspfn, sc, 0) fails →
 * "Error loading OCSP response … for stapling." and no start; Hitch's test14-ocsp-vfy.sh:
 * `--test` fails without SSL_CERT_FILE, passes with it). Responses Hitch would fetch
 * into ocsp-dir are only checked when they arrive (HOCSP_verify, not stapled if they
 * fail), never at start: an issuer the CA store does not trust is a warning here.
 */
function checkStapling(
  loaded: readonly CertificateMaterial[],
  config: ProxyConfig,
  warn: (message: string) => void,
): void {
  let store: X509Certificate[] | undefined;
  const trusted = (): X509Certificate[] => {
    try {
      store ??= loadCaStore();
    } catch (error) {
      throw fileError('SSL_CERT_FILE', (error as Error).message);
    }
    return store;
  };
  for (const material of loaded) {
    const fetches = config.ocspDir !== undefined;
    if (material.ocspResponse === undefined && !(fetches && material.ocspVerifyStaple)) continue;
    const [leaf, ...chain] = certificateChain(material.cert);
    if (leaf === undefined) continue;
    const issuer = findIssuer(leaf, chain);
    if (material.ocspResponse !== undefined) {
      if (issuer === undefined) {
        throw fileError(
          material.source,
          'ocsp-resp-file needs the issuer certificate after the leaf in the pem-file',
        );
      }
      try {
        checkOcspResponse(material.ocspResponse, leaf, issuer, {
          verify: material.ocspVerifyStaple,
          trusted: material.ocspVerifyStaple ? trusted() : [],
          chain,
        });
      } catch (error) {
        throw fileError(material.source, `ocsp-resp-file: ${(error as Error).message}`);
      }
    } else if (ocspResponderUrl(leaf) !== undefined) {
      let store: X509Certificate[];
      try {
        store = trusted();
      } catch {
        continue; // no CA store at all: preflight says so once, for every certificate
      }
      if (issuer === undefined || !chainsToTrusted(issuer, { trusted: store, chain })) {
        warn(
          `${material.source}: ocsp-verify-staple: the issuer is not trusted by the CA store (${process.env.SSL_CERT_FILE ?? 'system'}), so no fetched OCSP response will be stapled (set SSL_CERT_FILE to a bundle with the issuing CA)`,
        );
      }
    }
  }
}

/** Hitch's "SNI name '…' from '…' overridden by '…'": same name in two pem-files of a scope. */
function warnOverriddenNames(
  loaded: readonly CertificateMaterial[],
  frontendCount: number,
  warn: (message: string) => void,
): void {
  const scopes: Array<number | undefined> = [undefined];
  for (let index = 0; index < frontendCount; index++) scopes.push(index);
  for (const scope of scopes) {
    const owner = new Map<string, string>();
    for (const material of loaded) {
      if (material.frontendIndex !== scope) continue;
      for (const name of material.names) {
        const previous = owner.get(name);
        if (previous !== undefined && previous !== material.source) {
          warn(`SNI name '${name}' from '${previous}' overridden by '${material.source}'`);
        }
        owner.set(name, material.source);
      }
    }
  }
}
