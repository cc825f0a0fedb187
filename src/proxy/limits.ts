/**
 * Per-client limits, consulted at accept before any TLS object exists (issue 20): the
 * deny list, repeat-offender bans, new connections per second and concurrent connections
 * per client address. The frontend asks; this counts.
 *
 * Everything here is per worker. Cluster workers are processes without shared memory, and
 * asking the primary on every accept would put it on every connection's path; the kernel
 * spreads one address's connections over the workers' SO_REUSEPORT sockets by 4-tuple
 * hash, so an address can reach N per worker (exactly N with `workers = 1`). Only bans are
 * shared: they are rare, so the worker that decides one tells the primary, which tells
 * every worker (`ban()`).
 *
 * A client is its address; IPv6 clients by their first `ipv6Prefix` bits (a /64 is one
 * subscriber), IPv4-mapped IPv6 as the IPv4 address. Every map is bounded: entries go when
 * they no longer limit anything (count 0, bucket full, window or ban over), and past
 * MAX_TRACKED_CLIENTS the rule of each map says what gives.
 */
import { BlockList } from 'node:net';
import ipaddr from 'ipaddr.js';
import type { RepeatOffenderPolicy } from '../config/model.js';
import type { ConnectionFailureReason, RefusalReason } from './events.js';

export interface ClientLimitSettings {
  /** 0 = off. */
  readonly perIpMaxConnections: number;
  readonly perIpIpv6Prefix: number;
  /** New connections per second, burst the same; 0 = off. */
  readonly perIpConnectionRate: number;
  /** 'a.b.c.d/n' and 'x::/n' ranges (config/deny-file.ts). */
  readonly denyList: readonly string[];
  readonly denyRepeatOffenders: RepeatOffenderPolicy | undefined;
}

/** Whether any per-client limit is configured (none: no limiter, no per-connection cost). */
export function hasClientLimits(settings: ClientLimitSettings): boolean {
  return (
    settings.perIpMaxConnections > 0 ||
    settings.perIpConnectionRate > 0 ||
    settings.denyList.length > 0 ||
    settings.denyRepeatOffenders !== undefined
  );
}

/**
 * Clients tracked per map per worker (~100 bytes each). Past it: a new address's
 * connections are admitted uncounted (concurrent connections), or the oldest entry makes
 * room (rate buckets: that address starts with a full bucket again; failure windows: its
 * count restarts; bans: the oldest ban ends early).
 */
export const MAX_TRACKED_CLIENTS = 100_000;
/** Full buckets, ended windows and bans are swept at most this often (on accept). */
const SWEEP_INTERVAL_MS = 1_000;

/** Failures that count towards deny-repeat-offenders: a client that is no TLS client. */
const OFFENDING_FAILURES: ReadonlySet<ConnectionFailureReason> = new Set([
  'handshake_error',
  'handshake_timeout',
  'not_tls',
  'client_hello_too_large',
]);

const IPV4_MAPPED_PREFIX = '::ffff:';

/**
 * The client an address belongs to: IPv4 as is, IPv4-mapped IPv6 unmapped, IPv6 cut to
 * its first `ipv6Prefix` bits ('2001:db8:1:2::/64'). undefined: not an IP address.
 */
export function clientKey(address: string, ipv6Prefix: number): string | undefined {
  if (!address.includes(':'))
    return ipaddr.IPv4.isValidFourPartDecimal(address) ? address : undefined;
  if (address.startsWith(IPV4_MAPPED_PREFIX) && address.includes('.')) {
    const v4 = address.slice(IPV4_MAPPED_PREFIX.length);
    return ipaddr.IPv4.isValidFourPartDecimal(v4) ? v4 : undefined;
  }
  const percent = address.indexOf('%');
  const text = percent === -1 ? address : address.slice(0, percent);
  if (!ipaddr.IPv6.isValid(text)) return undefined;
  const parsed = ipaddr.IPv6.parse(text);
  if (parsed.isIPv4MappedAddress()) return parsed.toIPv4Address().toString();
  const bytes = parsed.toByteArray();
  for (let bit = ipv6Prefix; bit < 128; bit++) {
    const index = bit >> 3;
    bytes[index] = (bytes[index] as number) & ~(0x80 >> (bit & 7));
  }
  return `${ipaddr.fromByteArray(bytes).toString()}/${ipv6Prefix}`;
}

/** The family of a client key or address for net.BlockList. */
function familyOf(key: string): 'ipv4' | 'ipv6' {
  return key.includes(':') ? 'ipv6' : 'ipv4';
}

/** The deny-file ranges as node's CIDR matcher. */
export function denyBlockList(ranges: readonly string[]): BlockList {
  const list = new BlockList();
  for (const range of ranges) {
    const slash = range.lastIndexOf('/');
    const address = range.slice(0, slash);
    list.addSubnet(address, Number(range.slice(slash + 1)), familyOf(address));
  }
  return list;
}

/** What admit() decided: refused with a reason, or admitted (release `key` on close). */
export type Admission =
  | { readonly refused: RefusalReason; readonly key: string }
  | { readonly refused: undefined; readonly key: string; readonly counted: boolean };

interface Bucket {
  tokens: number;
  at: number;
}

interface FailureWindow {
  failures: number;
  startedAt: number;
}

export interface ClientLimiterHooks {
  /** This worker banned `key` until `untilMs` (Date.now() time): tell the others. */
  banned?(key: string, untilMs: number): void;
}

export class ClientLimiter {
  private readonly deny: BlockList | undefined;
  private readonly open = new Map<string, number>();
  private readonly buckets = new Map<string, Bucket>();
  private readonly failureWindows = new Map<string, FailureWindow>();
  /** Client key → Date.now() at which the ban ends. */
  private readonly bans = new Map<string, number>();
  private lastSweep = 0;

  constructor(
    private readonly settings: ClientLimitSettings,
    private readonly hooks: ClientLimiterHooks = {},
    /** Monotonic ms for buckets and windows; wall-clock ms for bans (shared across processes). */
    private readonly clock: { monotonic(): number; wall(): number } = {
      monotonic: () => performance.now(),
      wall: () => Date.now(),
    },
  ) {
    this.deny = settings.denyList.length > 0 ? denyBlockList(settings.denyList) : undefined;
  }

  /**
   * Admit or refuse a new connection from `address` (as node or a PROXY header reports
   * it). undefined: not an IP address (a LOCAL PROXY header, a unix socket): not limited.
   */
  admit(address: string): Admission | undefined {
    const key = clientKey(address, this.settings.perIpIpv6Prefix);
    if (key === undefined) return undefined;
    const now = this.clock.monotonic();
    if (now - this.lastSweep >= SWEEP_INTERVAL_MS) this.sweep(now);
    // The whole address, not the /64: a deny file may list one host of a network.
    if (this.deny !== undefined) {
      const slash = key.indexOf('/');
      const host = slash === -1 ? key : address.replace(/%.*$/, '');
      if (this.deny.check(host, familyOf(host))) return { refused: 'denied', key };
    }
    if (this.bans.size > 0) {
      const until = this.bans.get(key);
      if (until !== undefined) {
        if (until > this.clock.wall()) return { refused: 'repeat_offender', key };
        this.bans.delete(key);
      }
    }
    if (this.settings.perIpConnectionRate > 0 && !this.takeToken(key, now))
      return { refused: 'per_ip_rate', key };
    const max = this.settings.perIpMaxConnections;
    if (max === 0) return { refused: undefined, key, counted: false };
    const count = this.open.get(key) ?? 0;
    if (count >= max) return { refused: 'per_ip_max_connections', key };
    if (count === 0 && this.open.size >= MAX_TRACKED_CLIENTS)
      return { refused: undefined, key, counted: false };
    this.open.set(key, count + 1);
    return { refused: undefined, key, counted: true };
  }

  /** A counted connection of `key` closed. */
  release(key: string): void {
    const count = this.open.get(key);
    if (count === undefined) return;
    if (count <= 1) this.open.delete(key);
    else this.open.set(key, count - 1);
  }

  /** A connection from `address` failed for `reason`: a repeat offender is banned. */
  failed(address: string, reason: ConnectionFailureReason): void {
    const policy = this.settings.denyRepeatOffenders;
    if (policy === undefined || !OFFENDING_FAILURES.has(reason)) return;
    const key = clientKey(address, this.settings.perIpIpv6Prefix);
    if (key === undefined) return;
    const now = this.clock.monotonic();
    let window = this.failureWindows.get(key);
    if (window === undefined || now - window.startedAt >= policy.windowMs) {
      if (window === undefined) makeRoom(this.failureWindows);
      window = { failures: 0, startedAt: now };
      this.failureWindows.set(key, window);
    }
    window.failures += 1;
    if (window.failures < policy.failures) return;
    this.failureWindows.delete(key);
    const until = this.clock.wall() + policy.banMs;
    this.ban(key, until);
    this.hooks.banned?.(key, until);
  }

  /** Refuse `key` until `untilMs` (Date.now() time): decided here or by another worker. */
  ban(key: string, untilMs: number): void {
    if (!this.bans.has(key)) makeRoom(this.bans);
    this.bans.set(key, Math.max(untilMs, this.bans.get(key) ?? 0));
  }

  /** Clients tracked right now, per map (tests, and the bound). */
  get tracked(): { open: number; buckets: number; failureWindows: number; bans: number } {
    return {
      open: this.open.size,
      buckets: this.buckets.size,
      failureWindows: this.failureWindows.size,
      bans: this.bans.size,
    };
  }

  /** Token bucket: `rate` per second, burst `rate`. */
  private takeToken(key: string, now: number): boolean {
    const rate = this.settings.perIpConnectionRate;
    let bucket = this.buckets.get(key);
    if (bucket === undefined) {
      makeRoom(this.buckets);
      bucket = { tokens: rate, at: now };
      this.buckets.set(key, bucket);
    } else {
      bucket.tokens = Math.min(rate, bucket.tokens + ((now - bucket.at) * rate) / 1000);
      bucket.at = now;
    }
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  /** Drop what no longer limits anything: full buckets, ended windows and bans. */
  sweep(now: number): void {
    this.lastSweep = now;
    const rate = this.settings.perIpConnectionRate;
    for (const [key, bucket] of this.buckets)
      if (bucket.tokens + ((now - bucket.at) * rate) / 1000 >= rate) this.buckets.delete(key);
    const policy = this.settings.denyRepeatOffenders;
    if (policy !== undefined)
      for (const [key, window] of this.failureWindows)
        if (now - window.startedAt >= policy.windowMs) this.failureWindows.delete(key);
    if (this.bans.size > 0) {
      const wall = this.clock.wall();
      for (const [key, until] of this.bans) if (until <= wall) this.bans.delete(key);
    }
  }
}

/** At the bound, the oldest entry (first inserted) goes. */
function makeRoom(map: Map<string, unknown>): void {
  if (map.size < MAX_TRACKED_CLIENTS) return;
  const oldest = map.keys().next();
  if (!oldest.done) map.delete(oldest.value);
}
