/**
 * Value parsers shared by every option: each takes one scalar item and either returns
 * a typed value or throws a ConfigError pointing at that item.
 */
import { isIP } from 'node:net';
import { ConfigError } from '../errors.js';
import {
  type BackendAddress,
  type ClientVerifyMode,
  type LogLevelName,
  SYSLOG_FACILITIES,
  type SyslogFacility,
  type TcpAddress,
  type TlsProtocolName,
} from '../model.js';
import type { BlockValue, Entry, ScalarItem, ScalarValue } from './entry.js';

export function invalid(
  item: { readonly position: ScalarItem['position'] },
  message: string,
  expected?: string,
): never {
  throw new ConfigError('UNHITCH_CONFIG_INVALID_VALUE', message, item.position, expected);
}

/** The entry's value as exactly one scalar (possibly unset). */
export function singleItem(entry: Entry): ScalarItem {
  const value = entry.value;
  if (value.kind === 'block')
    invalid(value, `'${entry.name}' takes a value, not a block`, 'a single value');
  const [first, second] = value.items;
  if (!first) invalid(entry, `'${entry.name}' needs a value`);
  if (second) invalid(second, `unexpected extra value for '${entry.name}'`, 'a single value');
  return first;
}

export function scalarItems(entry: Entry): readonly ScalarItem[] {
  const value: ScalarValue | BlockValue = entry.value;
  if (value.kind === 'block')
    invalid(value, `'${entry.name}' takes a value, not a block`, 'a value');
  return value.items;
}

const TRUE_WORDS = new Set(['yes', 'y', 'on', 'true', 't']);
const FALSE_WORDS = new Set(['no', 'n', 'off', 'false', 'f']);
const BOOL_EXPECTED = 'yes/y/on/true/t or no/n/off/false/f';

/** Hitch's spellings, any case, quoted or not; 1/0 are NOT booleans in hitch.conf. */
export function parseBool(item: ScalarItem, text: string): boolean {
  const word = text.toLowerCase();
  if (TRUE_WORDS.has(word)) return true;
  if (FALSE_WORDS.has(word)) return false;
  return invalid(item, `invalid boolean ${JSON.stringify(text)}`, BOOL_EXPECTED);
}

export function parseUint(
  item: ScalarItem,
  text: string,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
  why = '',
): number {
  const wanted =
    max === Number.MAX_SAFE_INTEGER ? `an integer ≥ ${min}` : `an integer ${min}..${max}${why}`;
  if (!/^[0-9]+$/.test(text)) invalid(item, `invalid number ${JSON.stringify(text)}`, wanted);
  const value = Number(text);
  if (value < min || value > max || !Number.isSafeInteger(value))
    invalid(item, `${text} is out of range`, wanted);
  return value;
}

/**
 * The longest duration any option takes. node's timers hold at most 2^31−1 ms (24.8
 * days) and fire after 1 ms when asked for more, which turned a long drain-timeout into
 * an immediate SIGKILL; this bound leaves room for the seconds some timers add to it.
 */
export const MAX_DURATION_SECONDS = 2_000_000;

export interface DurationRange {
  /** Smallest accepted value besides `zero` (seconds). */
  readonly min: number;
  /** What 0 means, when it is accepted at all (e.g. 'off'). */
  readonly zero?: string;
}

/** A timeout: a timer of 0 ms would fire at once, so 0 is refused. */
export const TIMEOUT_RANGE: DurationRange = { min: 0.001 };

/**
 * Seconds within `range` and MAX_DURATION_SECONDS; fractions allowed (an unhitch
 * superset of Hitch's integers).
 */
export function parseSeconds(item: ScalarItem, text: string, range: DurationRange): number {
  const zero = range.zero === undefined ? '' : `, or 0 (${range.zero})`;
  const wanted = `seconds from ${range.min} to ${MAX_DURATION_SECONDS}${zero}`;
  if (!/^[0-9]+(\.[0-9]+)?$/.test(text))
    invalid(item, `invalid duration ${JSON.stringify(text)}`, wanted);
  const value = Number(text);
  if (value === 0 && range.zero !== undefined) return 0;
  if (value < range.min || value > MAX_DURATION_SECONDS)
    invalid(item, `duration ${text} is out of range`, wanted);
  return value;
}

export function parsePort(item: ScalarItem, text: string, min = 0): number {
  if (!/^[0-9]+$/.test(text))
    invalid(item, `invalid port ${JSON.stringify(text)}`, `a port number ${min}..65535`);
  const port = Number(text);
  if (port < min || port > 65535)
    invalid(item, `port ${text} is out of range`, `a port number ${min}..65535`);
  return port;
}

/** Hosts may be written with or without IPv6 brackets; `*` means every address. */
export function normalizeHost(item: ScalarItem, host: string): string | undefined {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (bare === '*') return undefined;
  if (bare === '' || /\s/.test(bare))
    invalid(item, `invalid host ${JSON.stringify(host)}`, 'an IP address, a host name or *');
  return bare;
}

export interface ListenSpec {
  readonly address: TcpAddress;
  /** Hitch's `-f [HOST]:PORT+CERT` binds a certificate to the frontend. */
  readonly certPath: string | undefined;
}

const BRACKET_EXPECTED = '"[HOST]:PORT" (HOST may be *, an IPv4 or IPv6 address or a name)';

/** `[host]:port`, `[*]:port`, `[::1]:port`, optionally `+cert` (frontends only). */
export function parseBracketAddress(
  item: ScalarItem,
  text: string,
  options: { readonly wildcard: boolean; readonly allowCert: boolean; readonly minPort: number },
): ListenSpec {
  const match = /^\[([^\]]*)\]:([^+]*)(?:\+(.*))?$/.exec(text);
  if (!match) invalid(item, `invalid address ${JSON.stringify(text)}`, BRACKET_EXPECTED);
  const [, hostText = '', portText = '', cert] = match;
  if (cert !== undefined && (!options.allowCert || cert === '')) {
    invalid(item, `invalid address ${JSON.stringify(text)}`, BRACKET_EXPECTED);
  }
  const host = normalizeHost(item, hostText);
  if (host === undefined && !options.wildcard)
    invalid(item, 'a wildcard address is not allowed here', 'a specific host');
  const port = parsePort(item, portText, options.minPort);
  return { address: { kind: 'tcp', host, port }, certPath: cert };
}

/** `[host]:port` or (Hitch 1.5) a unix socket path. */
export function parseBackend(item: ScalarItem, text: string): BackendAddress {
  if (text.startsWith('/') || text.startsWith('./') || text.startsWith('../'))
    return { kind: 'unix', path: text };
  return parseBracketAddress(item, text, { wildcard: false, allowCert: false, minPort: 1 }).address;
}

/** unhitch `metrics`: "host:port" or "[host]:port". */
export function parseHostPort(item: ScalarItem, text: string): TcpAddress {
  if (text.startsWith('['))
    return parseBracketAddress(item, text, { wildcard: true, allowCert: false, minPort: 0 })
      .address;
  const colon = text.lastIndexOf(':');
  if (colon <= 0 || text.indexOf(':') !== colon)
    invalid(item, `invalid address ${JSON.stringify(text)}`, '"HOST:PORT" or "[HOST]:PORT"');
  const host = normalizeHost(item, text.slice(0, colon));
  return { kind: 'tcp', host, port: parsePort(item, text.slice(colon + 1)) };
}

export const TLS_PROTOCOLS: readonly TlsProtocolName[] = [
  'SSLv3',
  'TLSv1.0',
  'TLSv1.1',
  'TLSv1.2',
  'TLSv1.3',
];
export const LEGACY_PROTOCOLS: ReadonlySet<TlsProtocolName> = new Set([
  'SSLv3',
  'TLSv1.0',
  'TLSv1.1',
]);

/** Space-separated (or several items); returned in canonical order without duplicates. */
export function parseTlsProtos(items: readonly ScalarItem[]): TlsProtocolName[] {
  const chosen = new Set<TlsProtocolName>();
  for (const item of items) {
    for (const word of (item.text ?? '').split(/[\s,]+/).filter(Boolean)) {
      const proto = TLS_PROTOCOLS.find((name) => name === word);
      if (!proto)
        invalid(item, `unknown TLS protocol ${JSON.stringify(word)}`, TLS_PROTOCOLS.join(', '));
      chosen.add(proto);
    }
  }
  const first = items[0];
  if (chosen.size === 0 && first) invalid(first, 'tls-protos is empty', TLS_PROTOCOLS.join(', '));
  return TLS_PROTOCOLS.filter((name) => chosen.has(name));
}

const HITCH_LOG_LEVELS: readonly LogLevelName[] = ['error', 'info', 'debug'];
const PINO_LEVELS: readonly LogLevelName[] = [
  'fatal',
  'error',
  'warn',
  'info',
  'debug',
  'trace',
  'silent',
];

/** Hitch's 0 (errors only) / 1 (normal) / 2 (debug), or a pino level name. */
export function parseLogLevel(item: ScalarItem, text: string): LogLevelName {
  if (/^[0-9]+$/.test(text)) {
    const level = HITCH_LOG_LEVELS[Number(text)];
    if (level) return level;
  }
  const named = PINO_LEVELS.find((name) => name === text.toLowerCase());
  if (!named)
    invalid(
      item,
      `invalid log level ${JSON.stringify(text)}`,
      `0, 1, 2 or one of ${PINO_LEVELS.join(', ')}`,
    );
  return named;
}

const CLIENT_VERIFY_MODES: readonly ClientVerifyMode[] = ['none', 'optional', 'required'];

/** Hitch's client-verify (1.6): none, optional or required. */
export function parseClientVerify(item: ScalarItem, text: string): ClientVerifyMode {
  const mode = CLIENT_VERIFY_MODES.find((name) => name === text.toLowerCase());
  if (mode === undefined) {
    invalid(item, `invalid client-verify ${JSON.stringify(text)}`, 'none, optional or required');
  }
  return mode;
}

/** Hitch's syslog-facility names; `auth` means authpriv there, as here. */
export function parseSyslogFacility(item: ScalarItem, text: string): SyslogFacility {
  const facility = SYSLOG_FACILITIES.find((name) => name === text);
  if (facility === undefined)
    invalid(item, `invalid syslog facility ${JSON.stringify(text)}`, SYSLOG_FACILITIES.join(', '));
  return facility === 'auth' ? 'authpriv' : facility;
}

/** Hitch's alpn-protos: comma-separated, spaces ignored, a trailing comma tolerated. */
export function parseAlpnProtos(item: ScalarItem, text: string): string[] {
  const parts = text.replace(/\s+/g, '').split(',');
  if (parts.length > 1 && parts[parts.length - 1] === '') parts.pop();
  for (const part of parts) {
    if (part === '')
      invalid(item, 'alpn-protos has an empty protocol in the list', 'e.g. "h2,http/1.1"');
    if (Buffer.byteLength(part) > 255)
      invalid(item, `ALPN protocol ${JSON.stringify(part)} is too long`, 'at most 255 bytes');
  }
  return parts;
}

/** unhitch backend-source-addresses: IP literals separated by commas or spaces. */
export function parseAddressList(items: readonly ScalarItem[]): string[] {
  const addresses: string[] = [];
  for (const item of items) {
    for (const word of (item.text ?? '').split(/[\s,]+/).filter(Boolean)) {
      if (isIP(word) === 0)
        invalid(item, `invalid source address ${JSON.stringify(word)}`, 'IPv4 or IPv6 addresses');
      addresses.push(word);
    }
  }
  return addresses;
}

/** RFC 1123 host names; no wildcard (neither tls-alpn-01 nor http-01 can prove one). */
const DNS_NAME =
  /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * An all-digit last label is no host name (RFC 3696 2: top-level domains are never
 * numeric) but what inet_aton reads as an address: 127.0.0.1, and also 127.1 or 2130706433.
 */
const NUMERIC_LAST_LABEL = /(?:^|\.)[0-9]+$/;

/** dns-name: a DNS name an ACME certificate is ordered for. */
export function parseDnsName(item: ScalarItem, text: string): string {
  const name = text.toLowerCase().replace(/\.$/, '');
  if (name.startsWith('*.'))
    invalid(
      item,
      `${JSON.stringify(text)}: a wildcard needs the dns-01 challenge, which unhitch does not answer`,
      'a DNS name without *',
    );
  const bare = name.replace(/^\[(.*)\]$/, '$1');
  if (isIP(bare) !== 0 || NUMERIC_LAST_LABEL.test(name))
    invalid(
      item,
      `${JSON.stringify(text)} is an IP address, not a DNS name: ACME IP identifiers (RFC 8738) are not ordered`,
      'a DNS name such as "tracker.example.com"',
    );
  if (!DNS_NAME.test(name)) invalid(item, `invalid DNS name ${JSON.stringify(text)}`, 'a DNS name');
  return name;
}
