/**
 * The start-up summary: one log line per frontend saying what it serves (the address it
 * listens on, the certificates it offers, TLS versions, key-exchange groups), so an
 * operator sees at a glance what a config turned into.
 */
import type { Logger } from 'pino';
import type { ProxyConfig, TcpAddress } from '../config/model.js';
import { certificatesForFrontend } from '../tls/contexts.js';
import type { CertificateMaterial } from '../tls/material.js';
import { addressText } from './log-format.js';

/** How many certificates a line names before it says "and N more". */
const NAMED_CERTIFICATES = 4;

export interface FrontendSummary {
  /** Where it listens, with the port actually bound. */
  readonly frontend: string;
  /** Each certificate's first name, in SNI order (the last is the default). */
  readonly certificates: readonly string[];
  readonly tls: readonly string[];
  readonly groups: string;
}

function certificateNames(certificates: readonly CertificateMaterial[]): string[] {
  const names = certificates.map((material) => {
    const [first, ...others] = material.names;
    const name = first ?? material.source;
    return others.length > 0 ? `${name} (+${others.length} names)` : name;
  });
  if (names.length <= NAMED_CERTIFICATES) return names;
  return [...names.slice(0, NAMED_CERTIFICATES), `and ${names.length - NAMED_CERTIFICATES} more`];
}

/**
 * One summary per frontend of `config`. `bound`: the addresses a worker reported listening
 * on, in frontend order (a port 0 frontend shows the port the kernel chose).
 */
export function frontendSummaries(
  config: ProxyConfig,
  certificates: readonly CertificateMaterial[],
  bound: readonly TcpAddress[] | undefined,
): FrontendSummary[] {
  return config.frontends.map((frontend, index) => ({
    frontend: addressText(bound?.[index] ?? frontend.address),
    certificates: certificateNames(
      certificatesForFrontend(certificates, index, frontend.matchGlobalCerts),
    ),
    tls: frontend.tlsProtos,
    groups: config.ecdhCurve === 'auto' ? "OpenSSL's default list" : config.ecdhCurve,
  }));
}

/** Logs the summaries of a generation that listens: one line per frontend. */
export function announceFrontends(
  generation: {
    readonly config: ProxyConfig;
    readonly certificates: readonly CertificateMaterial[];
    readonly listening: ReadonlyMap<number, readonly TcpAddress[]>;
  },
  logger: Logger,
): void {
  const firstSlot = Math.min(...generation.listening.keys());
  const bound = generation.listening.get(firstSlot);
  for (const summary of frontendSummaries(generation.config, generation.certificates, bound))
    logger.info(summary, 'frontend');
}
