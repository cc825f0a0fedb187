/**
 * A frontend named by a host name listens on every address the name resolves to, as
 * Hitch's frontend_listen() does (getaddrinfo with AI_PASSIVE | AI_ADDRCONFIG, one socket
 * per result): a name with an A and an AAAA record serves IPv4 and IPv6 clients alike.
 * The expansion happens once, in the primary's preflight (start, --test, reload), so the
 * workers, the listening sockets, dbg-listen and the logs all see numeric addresses; as
 * root the names are resolved by an unprivileged child (net/bind-lookup.ts).
 */
import { isIP } from 'node:net';
import type { FrontendConfig, ProxyConfig } from '../config/model.js';
import { bindLookupAll, type LookupAll } from './bind-lookup.js';

export type { LookupAll } from './bind-lookup.js';

/**
 * The config with each named frontend replaced by one frontend per address (duplicates
 * dropped, order kept). A name that does not resolve rejects with the lookup's error,
 * named by `onUnresolved`.
 */
export async function expandFrontendHosts(
  config: ProxyConfig,
  onUnresolved: (name: string, error: NodeJS.ErrnoException) => Error,
  resolve: LookupAll = bindLookupAll,
): Promise<ProxyConfig> {
  const resolved = new Map<string, readonly string[]>();
  for (const frontend of config.frontends) {
    const host = frontend.address.host;
    if (host === undefined || host === '*' || host === '' || isIP(host) !== 0) continue;
    if (resolved.has(host)) continue;
    try {
      resolved.set(host, [...new Set(await resolve(host))]);
    } catch (error) {
      throw onUnresolved(host, error as NodeJS.ErrnoException);
    }
  }
  if (resolved.size === 0) return config;
  const frontends = config.frontends.flatMap((frontend): FrontendConfig[] => {
    const addresses = resolved.get(frontend.address.host ?? '');
    if (addresses === undefined) return [frontend];
    return addresses.map((host) => ({ ...frontend, address: { ...frontend.address, host } }));
  });
  return { ...config, frontends };
}
