/**
 * wt-load configuration: the keys of aquatic_ws_load_test's TOML file (same names, same
 * meaning), plus a few of our own (url, tls, warmup, sdp sizes). CLI flags override the file.
 */
import { readFileSync } from 'node:fs';
import { parse as parseToml } from 'smol-toml';

export interface TorrentSettings {
  /** Offers carried by each announce (aquatic: offers_per_request). */
  readonly offers_per_request: number;
  readonly number_of_torrents: number;
  /** Torrent popularity: index = gamma(shape, scale) sample, as aquatic picks them. */
  readonly torrent_gamma_shape: number;
  readonly torrent_gamma_scale: number;
  readonly weight_announce: number;
  readonly weight_scrape: number;
  /** Length of the fake SDP strings in offers and answers. */
  readonly sdp_bytes: number;
}

export interface LoadConfig {
  /** host:port, used with `tls` when `url` is empty. */
  readonly server_address: string;
  /** Full ws:// or wss:// URL; wins over server_address. */
  readonly url: string;
  readonly tls: boolean;
  readonly num_workers: number;
  readonly num_connections_per_worker: number;
  readonly connection_creation_interval_ms: number;
  /** Measured seconds. */
  readonly duration: number;
  /** Start the measured window only once every connection is open. */
  readonly measure_after_max_connections_reached: boolean;
  /**
   * Ours: open every connection before any sends its first announce. aquatic starts each
   * connection's load at once; under a saturated single-core backend that makes the last
   * connections take minutes to open (the upgrade competes with the load), so this is on.
   */
  readonly hold_load_until_connected: boolean;
  /** Seconds of load before the measured window (after connections are up). */
  readonly warmup: number;
  /** Give up waiting for all connections after this many seconds and measure anyway. */
  readonly max_connect_seconds: number;
  /** Print machine-readable JSON event lines (for compare.ts). */
  readonly events: boolean;
  /**
   * Ours: open-loop announces per second over all connections (0: closed loop, the next
   * request leaves when the previous one's response arrives, as in aquatic). At a fixed rate
   * every proxy gets the same offered load, so their CPU per message compares at equal load.
   */
  readonly announce_rate: number;
  readonly torrents: TorrentSettings;
}

export const DEFAULT_CONFIG: LoadConfig = {
  server_address: '127.0.0.1:3000',
  url: '',
  tls: false,
  num_workers: 1,
  num_connections_per_worker: 16,
  connection_creation_interval_ms: 10,
  duration: 15,
  measure_after_max_connections_reached: true,
  hold_load_until_connected: true,
  warmup: 0,
  max_connect_seconds: 60,
  events: false,
  announce_rate: 0,
  torrents: {
    offers_per_request: 10,
    number_of_torrents: 10_000,
    torrent_gamma_shape: 0.2,
    torrent_gamma_scale: 100,
    weight_announce: 1,
    weight_scrape: 0,
    sdp_bytes: 120,
  },
};

export class LoadConfigError extends Error {
  readonly code = 'WT_LOAD_CONFIG';
}

/** ws:// or wss:// URL the connections use. */
export function targetUrl(config: LoadConfig): string {
  if (config.url !== '') return config.url;
  return `${config.tls ? 'wss' : 'ws'}://${config.server_address}`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Overlays known keys of `source` onto `base`, checking each value's type against the default's. */
function overlay<T extends object>(base: T, source: Record<string, unknown>, where: string): T {
  const result: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [key, value] of Object.entries(source)) {
    if (!(key in base)) continue; // aquatic keys we do not use (log_level, cpu_pinning)
    const current = (base as Record<string, unknown>)[key];
    if (isRecord(current)) {
      if (!isRecord(value)) throw new LoadConfigError(`${where}${key} must be a table`);
      result[key] = overlay(current as object, value, `${where}${key}.`);
      continue;
    }
    const normalized = typeof value === 'bigint' ? Number(value) : value;
    if (typeof normalized !== typeof current) {
      throw new LoadConfigError(`${where}${key} must be a ${typeof current}`);
    }
    result[key] = normalized;
  }
  return result as T;
}

export function parseConfigToml(text: string, base: LoadConfig = DEFAULT_CONFIG): LoadConfig {
  return overlay(base, parseToml(text) as Record<string, unknown>, '');
}

/** CLI flag → config path (flags use dashes, the file uses underscores). */
const FLAG_PATHS: Record<string, readonly string[]> = {
  'server-address': ['server_address'],
  url: ['url'],
  tls: ['tls'],
  workers: ['num_workers'],
  'num-workers': ['num_workers'],
  'connections-per-worker': ['num_connections_per_worker'],
  'connection-creation-interval-ms': ['connection_creation_interval_ms'],
  duration: ['duration'],
  warmup: ['warmup'],
  'hold-load-until-connected': ['hold_load_until_connected'],
  'max-connect-seconds': ['max_connect_seconds'],
  'measure-after-max-connections-reached': ['measure_after_max_connections_reached'],
  events: ['events'],
  rate: ['announce_rate'],
  'announce-rate': ['announce_rate'],
  offers: ['torrents', 'offers_per_request'],
  torrents: ['torrents', 'number_of_torrents'],
  'weight-announce': ['torrents', 'weight_announce'],
  'weight-scrape': ['torrents', 'weight_scrape'],
  'sdp-bytes': ['torrents', 'sdp_bytes'],
};

function coerce(text: string, like: unknown, flag: string): unknown {
  if (typeof like === 'number') {
    const value = Number(text);
    if (!Number.isFinite(value)) throw new LoadConfigError(`--${flag} needs a number`);
    return value;
  }
  if (typeof like === 'boolean') return text !== 'false' && text !== '0';
  return text;
}

/**
 * `--config=FILE` first, then the other flags. `--connections=N` is a convenience that sets
 * num_connections_per_worker = ceil(N / num_workers).
 */
export function configFromArgs(argv: readonly string[]): LoadConfig {
  const flags = new Map<string, string>();
  for (const arg of argv) {
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (!match?.[1]) throw new LoadConfigError(`unexpected argument ${arg}`);
    flags.set(match[1], match[2] ?? 'true');
  }
  const file = flags.get('config');
  let config = file ? parseConfigToml(readFileSync(file, 'utf8')) : DEFAULT_CONFIG;
  for (const [flag, text] of flags) {
    if (flag === 'config' || flag === 'connections') continue;
    const path = FLAG_PATHS[flag];
    if (!path) throw new LoadConfigError(`unknown flag --${flag}`);
    const [head, tail] = path as [string, string | undefined];
    if (tail === undefined) {
      const like = (config as unknown as Record<string, unknown>)[head];
      config = { ...config, [head]: coerce(text, like, flag) };
    } else {
      const like = (config.torrents as unknown as Record<string, unknown>)[tail];
      config = { ...config, torrents: { ...config.torrents, [tail]: coerce(text, like, flag) } };
    }
  }
  const total = flags.get('connections');
  if (total !== undefined) {
    const connections = Number(total);
    if (!(connections > 0)) throw new LoadConfigError('--connections needs a positive number');
    config = {
      ...config,
      num_connections_per_worker: Math.ceil(connections / config.num_workers),
    };
  }
  validate(config);
  return config;
}

export function validate(config: LoadConfig): void {
  if (!(config.num_workers >= 1)) throw new LoadConfigError('num_workers must be ≥ 1');
  if (!(config.num_connections_per_worker >= 1)) {
    throw new LoadConfigError('num_connections_per_worker must be ≥ 1');
  }
  if (!(config.announce_rate >= 0)) {
    throw new LoadConfigError('announce_rate must be ≥ 0 (announces/s; 0 = closed loop)');
  }
  if (!(config.duration > 0)) throw new LoadConfigError('duration must be > 0 (seconds)');
  if (!(config.torrents.number_of_torrents >= 1)) {
    throw new LoadConfigError('number_of_torrents must be ≥ 1');
  }
  if (config.torrents.weight_announce + config.torrents.weight_scrape <= 0) {
    throw new LoadConfigError('weight_announce + weight_scrape must be > 0');
  }
}
