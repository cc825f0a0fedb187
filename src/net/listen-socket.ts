/**
 * A TCP socket bound with SO_REUSEPORT but not listening, created in one process (the
 * primary, as root, so privileged ports work) and handed to another over IPC, where
 * `net.Server.listen(handle)` starts accepting on it.
 *
 * Node has no public API for "bind without listen" on Node 22 (net.BoundSocket is new in
 * 24), so this uses net._createServerHandle — the function node:cluster's own primary
 * uses to make shared handles, present with this signature on Node 22 and 24 — with
 * libuv's UV_TCP_REUSEPORT flag. A bound socket must not be listened on here: the
 * process that holds it without accepting keeps the socket, and so its accept queue,
 * alive while a worker closes its copy (fd back-off, reload, restart).
 */
import net, { isIP } from 'node:net';
import { getSystemErrorName } from 'node:util';
import { UnhitchError } from '../errors.js';
import { bindLookupAll, lookupError } from './bind-lookup.js';

/** An opaque libuv TCP handle (node's TCPWrap); net.Server.listen() accepts it. */
export interface ListenHandle {
  close(): void;
  getsockname(out: { address?: string; port?: number; family?: string }): number;
  /** uv_tcp_nodelay: TCP_NODELAY. Returns 0 or a negative errno. */
  setNoDelay?(enable: boolean): number;
  /** uv_tcp_keepalive: SO_KEEPALIVE, and with it TCP_KEEPIDLE (s), TCP_KEEPINTVL, TCP_KEEPCNT. */
  setKeepAlive?(enable: boolean, idleSeconds: number): number;
}

/**
 * TCP_NODELAY and keepalive (idle `keepaliveSec`, 0 = off) for every connection the
 * listening socket `handle` will accept. Linux copies both from the listening socket into
 * each socket accept(2) returns (the kernel clones the listener's socket state, keepalive
 * timer included), so they are set once here rather than five setsockopt(2) per connection
 * the way net.Server's `noDelay`/`keepAlive` options do (issue 24, bench/PERF-STEPS.md).
 * The handle is shared with the primary and every worker of the slot: each sets the same
 * values, and a reload that changes `tcp-keepalive` sets the new ones before listening.
 */
export function setAcceptedSocketOptions(handle: ListenHandle, keepaliveSec: number): void {
  handle.setNoDelay?.(true);
  handle.setKeepAlive?.(keepaliveSec > 0, keepaliveSec);
}

/** libuv's uv_tcp_flags: UV_TCP_REUSEPORT sets SO_REUSEPORT before bind(2). */
const UV_TCP_REUSEPORT = 2;

type CreateServerHandle = (
  address: string,
  port: number,
  addressType: 4 | 6,
  fd: undefined,
  flags: number,
) => ListenHandle | number;

export class ListenSocketError extends UnhitchError<'UNHITCH_LISTEN'> {
  constructor(
    message: string,
    readonly errno: string,
    /** `[host]:port` as Hitch names it in "{bind-socket}: …" (undefined: not a bind). */
    readonly address?: string,
  ) {
    super('UNHITCH_LISTEN', message);
    this.name = 'ListenSocketError';
  }
}

/**
 * The numeric address a configured host binds: "*" (undefined) is the dual-stack "::"; a
 * name, its first address (resolved unprivileged as root: net/bind-lookup.ts).
 */
export async function resolveBindHost(host: string | undefined): Promise<string> {
  if (host === undefined || host === '*' || host === '') return '::';
  if (isIP(host) !== 0) return host;
  const [first] = await bindLookupAll(host, false);
  if (first === undefined) throw lookupError(host, 'ENOTFOUND');
  return first;
}

/**
 * Bind `host:port` (a numeric address) with SO_REUSEPORT (unless `reusePort` is false).
 * Port 0 picks a free port; the returned port is the one bound. Throws UNHITCH_LISTEN
 * with the errno name.
 */
export function bindReusePort(
  host: string,
  port: number,
  reusePort = true,
): { handle: ListenHandle; port: number } {
  const create = (net as unknown as { _createServerHandle?: CreateServerHandle })
    ._createServerHandle;
  if (typeof create !== 'function') {
    throw new ListenSocketError(
      `node ${process.version} has no net._createServerHandle; unhitch needs Node 22.12+`,
      'ENOSYS',
    );
  }
  const family = isIP(host);
  const result = create(
    host,
    port,
    family === 6 ? 6 : 4,
    undefined,
    reusePort ? UV_TCP_REUSEPORT : 0,
  );
  const shown = family === 6 ? `[${host}]:${port}` : `${host}:${port}`;
  const bracketed = `[${host}]:${port}`;
  if (typeof result === 'number') {
    const errno = getSystemErrorName(result);
    throw new ListenSocketError(`cannot bind ${shown}: ${errno}`, errno, bracketed);
  }
  // libuv defers EADDRINUSE from bind(2) to listen(2) ("delayed error") and reports
  // success here; listen(2) on the unbound socket would then pick a random port. So the
  // bind is checked: an unbound socket has no port (or not the one asked for).
  const out: { port?: number } = {};
  const failed = result.getsockname(out);
  if (failed !== 0 || !out.port || (port !== 0 && out.port !== port)) {
    result.close();
    throw new ListenSocketError(`cannot bind ${shown}: EADDRINUSE`, 'EADDRINUSE', bracketed);
  }
  return { handle: result, port: out.port };
}
