/**
 * The primary ⇄ worker protocol. Sent with advanced serialization, so Buffers (keys,
 * certificates) cross as bytes. Other libraries (prom-client's aggregator) share the
 * channel: receivers ignore messages that are not theirs.
 */
import type { AcmeFailureReason } from '../acme/issuer.js';
import type { AcmeConfig, ProxyConfig, TcpAddress } from '../config/model.js';
import type { Identity } from '../ops/privileges.js';
import type { CertificateMaterial } from '../tls/material.js';
import { OCSP_RESPONSE_MAX_BYTES } from '../tls/ocsp-fetcher.js';

export type PrimaryMessage =
  | {
      readonly type: 'unhitch:start';
      readonly workerIndex: number;
      readonly generation: number;
      readonly config: ProxyConfig;
      readonly certificates: readonly CertificateMaterial[];
      readonly ticketKey: Buffer;
      /** Resolved by the primary (no account lookup in the worker); undefined = keep ours. */
      readonly identity: Identity | undefined;
      /** deny-repeat-offenders: bans in force, to hold from the first accept. */
      readonly bans: readonly ClientBan[];
    }
  /**
   * Sent with a handle: the worker's copy of its listening socket for frontend `frontend`
   * (every frontend's before 'unhitch:start', and again on request after a back-off).
   */
  | { readonly type: 'unhitch:listen-socket'; readonly frontend: number }
  | { readonly type: 'unhitch:ticket-key'; readonly key: Buffer }
  /**
   * ACME tls-alpn-01: open (cert and key given) or close (both undefined) the challenge
   * for `name`; the worker answers with unhitch:acme-challenge-done carrying the same id.
   */
  | {
      readonly type: 'unhitch:acme-challenge';
      readonly id: number;
      readonly name: string;
      readonly cert: Buffer | undefined;
      readonly key: Buffer | undefined;
    }
  /** Stop accepting, let connections finish (graceMs: null = no limit), then exit 0. */
  | { readonly type: 'unhitch:drain'; readonly graceMs: number | null }
  /** The primary reopened the log file (rotated) and made it ours to open: reopen it. */
  | { readonly type: 'unhitch:reopen-log' }
  /**
   * deny-repeat-offenders: refuse these clients at accept until their time (Date.now()
   * ms). Sent to every worker when one bans a client (a new worker has the earlier ones in
   * its start order).
   */
  | { readonly type: 'unhitch:bans'; readonly bans: readonly ClientBan[] };

/** A client (address, or IPv6 prefix) refused until `untilMs` (Date.now() time). */
export interface ClientBan {
  readonly client: string;
  readonly untilMs: number;
}

export type WorkerMessage =
  /** The worker's module has loaded and listens for orders ('online' comes too early for ESM). */
  | { readonly type: 'unhitch:hello' }
  | { readonly type: 'unhitch:listening'; readonly addresses: readonly TcpAddress[] }
  | { readonly type: 'unhitch:start-failed'; readonly error: CrossedError }
  /** Send this worker a fresh copy of its socket for frontend `frontend` (resume after a pause). */
  | { readonly type: 'unhitch:listen-socket-request'; readonly frontend: number }
  | { readonly type: 'unhitch:drained'; readonly forcedClosed: number }
  /** deny-repeat-offenders: this worker banned a client; every worker is to refuse it. */
  | { readonly type: 'unhitch:ban'; readonly ban: ClientBan }
  /** accepted false: the worker serves no tls-alpn-01 or the name is not in its acme block. */
  | {
      readonly type: 'unhitch:acme-challenge-done';
      readonly id: number;
      readonly accepted: boolean;
    };

/**
 * Primary → services process (cluster/net-services.ts): the network-facing duties that
 * must not run as root. Every order is idempotent state the primary resends to a
 * restarted services process, or a request with an id that the answer carries back.
 */
export type ServicesOrder =
  | {
      readonly type: 'unhitch:services-start';
      readonly config: ProxyConfig;
      /** The identity to switch to before anything touches the network (undefined: keep ours). */
      readonly identity: Identity | undefined;
    }
  /** Sent with a handle (bound by the primary, not listening): serve http-01 on it. */
  | { readonly type: 'unhitch:http-challenge-listen' }
  | { readonly type: 'unhitch:http-challenge-close' }
  /** Sent with a handle (the metrics address, bound by the primary): serve metrics on it. */
  | { readonly type: 'unhitch:metrics-listen' }
  /** The exposition for the services process's 'unhitch:metrics-request' `id`. */
  | {
      readonly type: 'unhitch:metrics-answer';
      readonly id: number;
      readonly status: number;
      readonly body: string;
      readonly contentType: string;
    }
  /** Keep ocsp-dir's responses fresh for these certificates (replaces any earlier order). */
  | { readonly type: 'unhitch:ocsp-start'; readonly order: OcspOrder }
  | { readonly type: 'unhitch:ocsp-stop' }
  /** The primary wrote (error undefined) or could not write a response to ocsp-dir. */
  | { readonly type: 'unhitch:ocsp-saved'; readonly id: number; readonly error: string | undefined }
  | {
      readonly type: 'unhitch:acme-order';
      readonly id: number;
      readonly acme: AcmeConfig;
      readonly accountKey: Buffer;
    }
  /** The workers have the tls-alpn-01 challenge up (or down); error: they refused it. */
  | {
      readonly type: 'unhitch:acme-tls-alpn-done';
      readonly id: number;
      readonly error: string | undefined;
    }
  /** The primary reopened the rotated log file and handed it to our user: reopen it too. */
  | { readonly type: 'unhitch:reopen-log' }
  /** Exit now (the primary stops). */
  | { readonly type: 'unhitch:services-stop' };

export interface OcspOrder {
  readonly connectTimeoutMs: number;
  readonly responseTimeoutMs: number;
  readonly refreshIntervalMs: number;
  readonly certificates: readonly OcspCertificate[];
}

/** What fetching needs of a certificate: no private key crosses to the services process. */
export interface OcspCertificate {
  readonly source: string;
  /** PEM chain, leaf first. */
  readonly cert: Buffer;
  readonly ocspVerifyStaple: boolean;
  /** The response cached in ocsp-dir, as bytes (read by the primary, parsed over there). */
  readonly cached: Buffer | undefined;
}

/** Services process → primary. */
export type ServicesReport =
  /** The module has loaded and listens for orders. */
  | { readonly type: 'unhitch:services-hello' }
  /** Switched to its identity (`uid`, the effective one): orders may come. */
  | { readonly type: 'unhitch:services-ready'; readonly uid: number | undefined }
  | { readonly type: 'unhitch:services-start-failed'; readonly error: CrossedError }
  | { readonly type: 'unhitch:http-challenge-listening'; readonly port: number }
  | { readonly type: 'unhitch:http-challenge-failed'; readonly error: CrossedError }
  /** A scraper asked for GET /metrics: the primary answers with 'unhitch:metrics-answer'. */
  | { readonly type: 'unhitch:metrics-request'; readonly id: number }
  /** Serving metrics on the socket 'unhitch:metrics-listen' carried. */
  | { readonly type: 'unhitch:metrics-listening'; readonly port: number }
  /** A checked response for `source`, for the primary to write to ocsp-dir. */
  | {
      readonly type: 'unhitch:ocsp-response';
      readonly id: number;
      readonly source: string;
      readonly response: Buffer;
    }
  /** Put a tls-alpn-01 challenge up in every worker (cert and key) or take it down. */
  | {
      readonly type: 'unhitch:acme-tls-alpn';
      readonly id: number;
      readonly name: string;
      readonly cert: Buffer | undefined;
      readonly key: Buffer | undefined;
    }
  | {
      readonly type: 'unhitch:acme-order-done';
      readonly id: number;
      readonly key: Buffer;
      readonly chain: Buffer;
    }
  | {
      readonly type: 'unhitch:acme-order-failed';
      readonly id: number;
      readonly error: CrossedError;
      readonly reason: AcmeFailureReason;
    };

/** An Error as it crosses the IPC channel: enough to log it again, stack included. */
export interface CrossedError {
  readonly name: string;
  readonly message: string;
  readonly code: string | undefined;
  readonly stack: string | undefined;
}

export function crossError(error: unknown): CrossedError {
  const err = error instanceof Error ? error : new Error(String(error));
  const code = (err as NodeJS.ErrnoException).code;
  return { name: err.name, message: err.message, code, stack: err.stack };
}

/** Back to an Error, so pino's `err` serializer logs it like any other. */
export function reviveError(crossed: CrossedError): Error {
  const error = Object.assign(new Error(crossed.message), { code: crossed.code });
  if (crossed.name !== error.name) error.name = crossed.name;
  error.stack = crossed.stack;
  return error;
}

export function isPrimaryMessage(value: unknown): value is PrimaryMessage {
  return isTagged(value) && value.type.startsWith('unhitch:');
}

export function isServicesOrder(value: unknown): value is ServicesOrder {
  return isTagged(value) && value.type.startsWith('unhitch:');
}

export function isServicesReport(value: unknown): value is ServicesReport {
  return isTagged(value) && value.type.startsWith('unhitch:');
}

/** The largest key or certificate chain an ACME order may hand back. */
export const SERVICES_REPORT_MAX_PEM_BYTES = 1024 * 1024;
/** The longest text field (a message, a stack, a path) the primary accepts from it. */
const SERVICES_REPORT_MAX_TEXT = 64 * 1024;
const ACME_FAILURE_REASONS: ReadonlySet<string> = new Set<AcmeFailureReason>([
  'ca_unreachable',
  'challenge_failed',
  'order_failed',
]);

type Fields = Record<string, unknown>;

function isText(value: unknown, max = SERVICES_REPORT_MAX_TEXT): value is string {
  return typeof value === 'string' && value.length <= max;
}

function isBytes(value: unknown, max: number): value is Buffer {
  return Buffer.isBuffer(value) && value.length <= max;
}

function isPort(value: unknown): boolean {
  return Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 0xffff;
}

function isId(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) > 0;
}

function isCrossedError(value: unknown): value is CrossedError {
  if (typeof value !== 'object' || value === null) return false;
  const { name, message, code, stack } = value as Fields;
  return (
    isText(name, 256) &&
    isText(message) &&
    (code === undefined || isText(code, 256)) &&
    (stack === undefined || isText(stack))
  );
}

/**
 * The services process runs as `user` and talks to the network: the root primary takes
 * nothing from it on trust. Each report's fields, by type: kinds, sizes, ranges. A
 * report that fails here is refused whole (services-process.ts), never half-handled.
 */
const SERVICES_REPORT_FIELDS: { readonly [T in ServicesReport['type']]: (r: Fields) => boolean } = {
  'unhitch:services-hello': () => true,
  'unhitch:services-ready': (r) =>
    r.uid === undefined || (Number.isSafeInteger(r.uid) && (r.uid as number) >= 0),
  'unhitch:services-start-failed': (r) => isCrossedError(r.error),
  'unhitch:http-challenge-listening': (r) => isPort(r.port),
  'unhitch:metrics-listening': (r) => isPort(r.port),
  'unhitch:http-challenge-failed': (r) => isCrossedError(r.error),
  'unhitch:metrics-request': (r) => isId(r.id),
  'unhitch:ocsp-response': (r) =>
    isId(r.id) && isText(r.source, 4096) && isBytes(r.response, OCSP_RESPONSE_MAX_BYTES),
  'unhitch:acme-tls-alpn': (r) =>
    isId(r.id) &&
    isText(r.name, 253) &&
    ((r.cert === undefined && r.key === undefined) ||
      (isBytes(r.cert, SERVICES_REPORT_MAX_PEM_BYTES) &&
        isBytes(r.key, SERVICES_REPORT_MAX_PEM_BYTES))),
  'unhitch:acme-order-done': (r) =>
    isId(r.id) &&
    isBytes(r.key, SERVICES_REPORT_MAX_PEM_BYTES) &&
    isBytes(r.chain, SERVICES_REPORT_MAX_PEM_BYTES),
  'unhitch:acme-order-failed': (r) =>
    isId(r.id) &&
    isCrossedError(r.error) &&
    typeof r.reason === 'string' &&
    ACME_FAILURE_REASONS.has(r.reason),
};

/**
 * Why a message from the services process is not a well-formed report, or undefined
 * when it is one. Messages without the `unhitch:` tag are not ours (undefined too).
 */
export function servicesReportProblem(value: unknown): string | undefined {
  if (!isServicesReport(value)) return undefined;
  const check = (SERVICES_REPORT_FIELDS as Record<string, ((r: Fields) => boolean) | undefined>)[
    value.type
  ];
  if (check === undefined) return `unknown report type ${JSON.stringify(value.type.slice(0, 64))}`;
  return check(value as unknown as Fields) ? undefined : `malformed ${value.type} report`;
}

export function isWorkerMessage(value: unknown): value is WorkerMessage {
  return isTagged(value) && value.type.startsWith('unhitch:');
}

function isTagged(value: unknown): value is { type: string } {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { type?: unknown }).type === 'string'
  );
}
