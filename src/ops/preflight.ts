/**
 * Every check a real start makes before it binds, in one place, so that `--test` and the
 * start cannot disagree: `--test` exits 0 exactly when a start would get as far as
 * binding. The start runs the same function (and then does the real thing: writes the
 * pidfile, opens the log, forks workers that build the same TLS servers).
 *
 * The deliberate exceptions, where `--test` passes and the start may still fail, are
 * Hitch's own and are all listed in TEST_DIFFERS_FROM_START below.
 */

import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname } from 'node:path';
import { pino } from 'pino';
import { acmeCertificateSource } from '../acme/store.js';
import { readDenyFile } from '../config/deny-file.js';
import type { BackendAddress, ProxyConfig } from '../config/model.js';
import { UnhitchError } from '../errors.js';
import { bindLookupAll } from '../net/bind-lookup.js';
import { expandFrontendHosts } from '../net/frontend-hosts.js';
import { strerror } from '../net/strerror.js';
import { TlsProxy } from '../proxy/proxy.js';
import { type CertificateMaterial, loadCertificates } from '../tls/material.js';
import { loadCaStore } from '../tls/ocsp.js';
import { generateTicketKey, readTicketKeyFile, TicketKeyError } from '../tls/tickets.js';
import {
  checkIdentity,
  checkNotRootWorkers,
  type PrivilegeError,
  ROOT_WORKERS_MESSAGE,
  resolveIdentity,
} from './privileges.js';

export type PreflightErrorCode =
  | 'UNHITCH_BACKEND' // a unix backend that is no socket, a backend name that does not resolve
  | 'UNHITCH_PIDFILE' // the pidfile could not be written
  | 'UNHITCH_LOG_FILE' // the log file could not be opened for appending
  | 'UNHITCH_FRONTEND_HOST'; // a frontend host name does not resolve

export class PreflightError extends UnhitchError<PreflightErrorCode> {
  constructor(code: PreflightErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'PreflightError';
  }
}

export interface PreflightOptions {
  readonly isRoot: boolean;
  /**
   * 'test' also checks what the start only finds out by doing it (the pidfile, the log
   * file, the ticket key file), without creating or changing any file.
   */
  readonly mode: 'start' | 'test';
}

/**
 * Where `--test` and a start deliberately disagree, as they do in Hitch (hitch.c):
 * - root-workers: as root without `user`, Hitch's `--test` exits 0 (it forks no worker);
 *   only the start refuses ("Refusing to run workers as root."). Scripts run
 *   `hitch --test` as root (package hooks, config management), so `--test` passes with
 *   one warning line that a start would refuse (ROOT_WORKERS_WARNING).
 * - address-in-use: `--test` never binds; an operator runs it while the old process
 *   still holds the port, so a port in use fails only the start.
 */
export const TEST_DIFFERS_FROM_START = ['root-workers', 'address-in-use'] as const;

/** The one line `--test` prints for the root-workers exception. */
export const ROOT_WORKERS_WARNING = `a start with this configuration would refuse: ${ROOT_WORKERS_MESSAGE} Set "user" in the config or --user (e.g. --user=nobody)`;

export interface PreflightResult {
  /**
   * The config a start runs: each frontend named by a host name replaced by one per
   * address it resolves to (net/frontend-hosts.ts), as Hitch binds them, and the deny
   * file's ranges read (config/deny-file.ts).
   */
  readonly config: ProxyConfig;
  readonly certificates: CertificateMaterial[];
  /** About the certificates (e.g. a key readable by others). */
  readonly certificateWarnings: string[];
  /** About user/group (e.g. not root, so they are ignored; --test: root workers). */
  readonly identityWarnings: string[];
}

/** Throws the first error a start would stop on; returns the loaded certificates. */
export async function preflight(
  configured: ProxyConfig,
  options: PreflightOptions,
): Promise<PreflightResult> {
  // First: the certificates and the workers' servers are built per (expanded) frontend.
  const expanded = await expandFrontendHosts(
    configured,
    (name, error) =>
      new PreflightError(
        'UNHITCH_FRONTEND_HOST',
        error.code === 'EPERM'
          ? `frontend host ${JSON.stringify(name)} not resolved: ${error.message}`
          : `frontend host ${JSON.stringify(name)} does not resolve (${error.code ?? 'lookup failed'})`,
        { cause: error },
      ),
  );
  const config = withDenyList(expanded);
  await checkBackend(config.backend);
  const identityWarnings = checkIdentity(config, { isRoot: options.isRoot }).warnings;
  // After checkIdentity: as root a missing account is UNHITCH_USER_UNKNOWN, not this.
  try {
    checkNotRootWorkers(
      options.isRoot ? resolveIdentity(config.user, config.group) : undefined,
      options.isRoot,
    );
  } catch (error) {
    // TEST_DIFFERS_FROM_START: 'root-workers'.
    if (options.mode === 'start' || (error as PrivilegeError).code !== 'UNHITCH_ROOT_WORKERS')
      throw error;
    identityWarnings.push(ROOT_WORKERS_WARNING);
  }
  const certificateWarnings: string[] = [];
  const warn = (message: string): void => {
    certificateWarnings.push(message);
  };
  const certificates = loadCertificates(config, warn, acmeCertificateSource(config.acme, warn));
  // The workers' own construction: contexts per certificate, tls.Server per frontend.
  TlsProxy.check({
    config,
    certificates,
    logger: pino({ level: 'silent' }),
    ticketKey: generateTicketKey(),
  });
  // The workers only log this one (their staples are then never used): say it here too.
  if (certificates.some((material) => material.ocspVerifyStaple)) {
    try {
      loadCaStore();
    } catch (error) {
      certificateWarnings.push(
        `ocsp-verify-staple: no CA store, so no staple can be verified or used (${(error as Error).message})`,
      );
    }
  }
  if (options.mode === 'test') {
    if (config.pidfile !== undefined) checkWritable(config.pidfile, 'UNHITCH_PIDFILE', 'pidfile');
    // The log file's missing directories are created (ops/log.ts), the pidfile's are not.
    if (config.logFilename !== undefined)
      checkWritable(config.logFilename, 'UNHITCH_LOG_FILE', 'log file', { createParents: true });
    if (config.ticketKeyFile !== undefined) checkTicketKeyFile(config.ticketKeyFile);
  }
  return { config, certificates, certificateWarnings, identityWarnings };
}

/** gai_strerror(3)'s text for what node's lookup reports, as Hitch prints it. */
const GAI_TEXT: Readonly<Record<string, string>> = {
  ENOTFOUND: 'Name or service not known',
  EAI_AGAIN: 'Temporary failure in name resolution',
  ENODATA: 'No address associated with hostname',
};

/**
 * Hitch's checks of the backend before it starts (and on --test and a reload): a unix
 * socket path must exist and be a socket (configuration.c's config_param_validate), a
 * host name must resolve (hitch.c's backaddr_init, "{getaddrinfo-backend}"; root reads no
 * resolver answer: an unprivileged child resolves it, as the bind addresses). Later
 * lookups are backend-refresh's (proxy/backend-resolver.ts); a failure then keeps the
 * address in use.
 */
async function checkBackend(backend: BackendAddress): Promise<void> {
  if (backend.kind === 'unix') {
    let isSocket: boolean;
    try {
      isSocket = statSync(backend.path).isSocket();
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      throw new PreflightError(
        'UNHITCH_BACKEND',
        `Invalid parameter 'backend': Unable to stat path '${backend.path}': ${strerror(code)}`,
        { cause: error },
      );
    }
    if (!isSocket)
      throw new PreflightError(
        'UNHITCH_BACKEND',
        `Invalid parameter 'backend': Invalid path '${backend.path}': Not a socket.`,
      );
    return;
  }
  if (backend.host === undefined || isIP(backend.host) !== 0) return;
  try {
    // As root, by a child that dropped to uid 65534 first (net/bind-lookup.ts).
    await bindLookupAll(backend.host, false);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'lookup failed';
    throw new PreflightError(
      'UNHITCH_BACKEND',
      `{getaddrinfo-backend}: ${GAI_TEXT[code] ?? code} (backend host ${JSON.stringify(backend.host)})`,
      { cause: error },
    );
  }
}

/** deny-file's ranges (config/deny-file.ts), read again on every start, --test and reload. */
function withDenyList(config: ProxyConfig): ProxyConfig {
  if (config.denyFile === undefined) return config;
  return Object.freeze({ ...config, denyList: Object.freeze(readDenyFile(config.denyFile)) });
}

/**
 * Could this file be opened for writing (created if missing, with its directories when
 * `createParents`), without touching anything?
 */
function checkWritable(
  path: string,
  code: PreflightErrorCode,
  what: string,
  options: { createParents?: boolean } = {},
): void {
  const fail = (reason: string, cause?: unknown): never => {
    throw new PreflightError(code, `cannot write ${what} ${path}: ${reason}`, { cause });
  };
  let exists = true;
  try {
    if (statSync(path).isDirectory()) fail('it is a directory');
  } catch (error) {
    if (error instanceof PreflightError) throw error;
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') fail((error as Error).message, error);
    exists = false;
  }
  let target = exists ? path : dirname(path);
  // mkdir -p: the nearest directory that exists is the one that must take new entries.
  while (!exists && options.createParents && !existsSync(target) && dirname(target) !== target)
    target = dirname(target);
  try {
    if (!exists && !statSync(target).isDirectory()) fail(`${target} is not a directory`);
    accessSync(target, constants.W_OK | (exists ? 0 : constants.X_OK));
  } catch (error) {
    if (error instanceof PreflightError) throw error;
    fail((error as NodeJS.ErrnoException).code ?? (error as Error).message, error);
  }
}

/** An existing key file must parse; a missing one must be creatable. */
function checkTicketKeyFile(path: string): void {
  try {
    readTicketKeyFile(path);
    return;
  } catch (error) {
    const cause = error instanceof TicketKeyError ? error.cause : undefined;
    if ((cause as NodeJS.ErrnoException | undefined)?.code !== 'ENOENT') throw error;
  }
  try {
    accessSync(dirname(path), constants.W_OK | constants.X_OK);
  } catch (error) {
    throw new TicketKeyError(
      'UNHITCH_TICKET_KEY_FILE',
      `cannot create ticket key file: ${(error as NodeJS.ErrnoException).code}`,
      path,
      error,
    );
  }
}
