/**
 * One ACME order with acme-client (account, order, authorizations, challenge, finalize,
 * download): JOSE, nonces and the RFC 8555 state machine are the library's. What is ours:
 * which challenge, how it is put up (the `ChallengeHooks` the primary provides), and that
 * a failure is one error with our code rather than the library's retries on retries.
 */
import { createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import type * as AcmeClient from 'acme-client';
import type { AcmeConfig } from '../config/model.js';
import { UnhitchError } from '../errors.js';

/** Why an order failed, in words that stay the same across releases (log field `reason`). */
export type AcmeFailureReason =
  | 'ca_unreachable' // no answer from the CA: refused, reset, timed out, unknown host
  | 'challenge_failed' // the CA could not validate a challenge (or none was offered)
  | 'order_failed'; // anything else the CA or the library refused

export class AcmeOrderError extends UnhitchError<'UNHITCH_ACME_FAILED'> {
  constructor(
    message: string,
    readonly reason: AcmeFailureReason,
    cause?: unknown,
  ) {
    super('UNHITCH_ACME_FAILED', message, { cause });
    this.name = 'AcmeOrderError';
  }
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);

function classify(error: unknown, message: string): AcmeFailureReason {
  const code = (error as NodeJS.ErrnoException).code;
  if ((code !== undefined && NETWORK_CODES.has(code)) || /stopped answering/.test(message))
    return 'ca_unreachable';
  if (/challenge|authori[sz]ation/i.test(message)) return 'challenge_failed';
  return 'order_failed';
}

/** How the primary puts a challenge up and takes it down. */
export interface ChallengeHooks {
  /** tls-alpn-01: serve `cert`/`key` to acme-tls/1 handshakes for `name`; resolves when served. */
  openTlsAlpn(name: string, cert: Buffer, key: Buffer): Promise<void>;
  closeTlsAlpn(name: string): Promise<void>;
  /** http-01: answer /.well-known/acme-challenge/`token` with `keyAuthorization`. */
  openHttp(token: string, keyAuthorization: string): void;
  closeHttp(token: string): void;
}

export interface ObtainedCertificate {
  /** PEM private key of the certificate (fresh for every order). */
  readonly key: Buffer;
  /** PEM chain, leaf first. */
  readonly chain: Buffer;
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
}

let library: Promise<typeof AcmeClient> | undefined;

/**
 * acme-client, loaded on the first order: it costs every process that imports it a fifth
 * of a second of CPU, and the primary (and every `--test`) imports this module.
 */
function acmeClient(): Promise<typeof AcmeClient> {
  library ??= import('acme-client').then((acme) => {
    // Retries are ours (back-off between whole orders, tls/acme/schedule.ts): the library's
    // per-request retries would hold a failed order for minutes before it is even reported.
    (acme.axios.defaults as { acmeSettings?: { retryMaxAttempts: number } }).acmeSettings = {
      ...(acme.axios.defaults as { acmeSettings?: object }).acmeSettings,
      retryMaxAttempts: 0,
    };
    // axios waits forever by default: a CA that accepts and never answers would hold the
    // order (and every later renewal) for good. A request that takes this long has failed.
    acme.axios.defaults.timeout = 30_000;
    return acme;
  });
  return library;
}

export async function obtainCertificate(
  config: AcmeConfig,
  accountKey: Buffer,
  hooks: ChallengeHooks,
): Promise<ObtainedCertificate> {
  const acme = await acmeClient();
  const client = new acme.Client({
    directoryUrl: config.directoryUrl,
    accountKey,
    // Polling for the CA's verdict: quick at first (a CA on loopback answers at once),
    // then slower, 10 tries in all.
    backoffAttempts: 10,
    backoffMin: 250,
    backoffMax: 10_000,
  });
  // A P-256 certificate key: smaller handshakes than RSA and what every client supports.
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const key = Buffer.from(privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
  try {
    await reachDirectory(config.directoryUrl);
    await client.createAccount({
      termsOfServiceAgreed: true,
      ...(config.contact.length > 0 ? { contact: [...config.contact] } : {}),
    });
    const [, csr] = await acme.crypto.createCsr(
      { commonName: config.domains[0] as string, altNames: [...config.domains] },
      key,
    );
    const chainText = await client.auto({
      csr,
      challengePriority: [config.challenge],
      // The CA checks; a self-check would dial our own public address from the inside.
      skipChallengeVerification: true,
      termsOfServiceAgreed: true,
      challengeCreateFn: async (authz, challenge, keyAuthorization) => {
        const name = authz.identifier.value;
        // acme-client's types predate RFC 8737; the CA's challenge objects carry its type.
        const type: string = challenge.type;
        if (type === 'tls-alpn-01') {
          const [alpnKey, alpnCert] = await acme.crypto.createAlpnCertificate(
            authz,
            keyAuthorization,
            await acme.crypto.createPrivateEcdsaKey(),
          );
          await hooks.openTlsAlpn(name, alpnCert, alpnKey);
        } else if (type === 'http-01') {
          hooks.openHttp(challenge.token, keyAuthorization);
        } else {
          throw new AcmeOrderError(
            `the CA offered no ${config.challenge} challenge for ${name}`,
            'challenge_failed',
          );
        }
      },
      challengeRemoveFn: async (authz, challenge) => {
        const type: string = challenge.type;
        if (type === 'tls-alpn-01') await hooks.closeTlsAlpn(authz.identifier.value);
        else if (type === 'http-01') hooks.closeHttp(challenge.token);
      },
    });
    const chain = Buffer.from(chainText);
    const leaf = new X509Certificate(chain);
    if (!leaf.checkPrivateKey(createPrivateKey(key)))
      throw new AcmeOrderError('the CA returned a certificate for another key', 'order_failed');
    return {
      key,
      chain,
      notBeforeMs: Date.parse(leaf.validFrom),
      notAfterMs: Date.parse(leaf.validTo),
    };
  } catch (error) {
    if (error instanceof AcmeOrderError) throw error;
    const why = reason(error);
    throw new AcmeOrderError(
      `ACME order for ${config.domains.join(', ')} failed: ${why}`,
      classify(error, why),
      error,
    );
  }
}

/**
 * The CA's directory, fetched once before the order: when the CA cannot be reached the
 * log says so with the socket's own reason (ECONNREFUSED, ENOTFOUND, a certificate
 * error). acme-client 5.4 loses that reason once its retries are spent (its axios
 * interceptor reads `response.config` of a response that never came).
 */
async function reachDirectory(url: string): Promise<void> {
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(30_000) });
  } catch (error) {
    const cause = (error as { cause?: NodeJS.ErrnoException }).cause;
    const why = cause?.code ?? cause?.message ?? (error as Error).message;
    throw new AcmeOrderError(`CA directory ${url} unreachable: ${why}`, 'ca_unreachable', error);
  }
  await response.arrayBuffer();
  if (!response.ok)
    throw new AcmeOrderError(
      `CA directory ${url} answered HTTP ${response.status}`,
      'ca_unreachable',
    );
}

/** The library's and axios's errors, in one line. */
function reason(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  const message = error instanceof Error ? error.message : String(error);
  // See reachDirectory: a request that got no response at all, mid-order.
  if (error instanceof TypeError && /reading 'config'/.test(message))
    return 'the CA stopped answering (no response to a request)';
  return code !== undefined && !message.includes(code) ? `${message} (${code})` : message;
}
