/**
 * The deny file (`deny-file`): one IPv4 or IPv6 address or CIDR range per line, `#`
 * comments and blank lines allowed. Read with the certificates (ops/preflight.ts), so a
 * bad line stops a start, fails `--test` and rejects a reload (the running list stays)
 * with the file's own line and column. The workers match the ranges with node's net.BlockList
 * (src/proxy/limits.ts).
 */
import { readFileSync } from 'node:fs';
import ipaddr from 'ipaddr.js';
import { parseIp } from '../net/ip.js';
import { ConfigError, type SourcePosition } from './errors.js';

const EXPECTED =
  'an IPv4 or IPv6 address, or a range like 192.0.2.0/24 or 2001:db8::/32, one per line';

/** 'a.b.c.d/n' or 'x::/n', the address part with its host bits as written. */
export type DenyRange = string;

/** The ranges of a deny file's text, normalised; throws ConfigError at the first bad line. */
export function parseDenyList(text: string, file: string): DenyRange[] {
  const ranges: DenyRange[] = [];
  const lines = text.split('\n');
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index] as string;
    const comment = line.indexOf('#');
    const content = (comment === -1 ? line : line.slice(0, comment)).replace(/\r$/, '');
    const words = [...content.matchAll(/\S+/g)];
    const first = words[0];
    if (first === undefined) continue;
    const position = (column: number): SourcePosition => ({ file, line: index + 1, column });
    const second = words[1];
    if (second !== undefined)
      throw new ConfigError(
        'UNHITCH_CONFIG_INVALID_VALUE',
        `unexpected ${JSON.stringify(second[0])} after ${JSON.stringify(first[0])}`,
        position((second.index ?? 0) + 1),
        EXPECTED,
      );
    const range = parseDenyRange(first[0]);
    if (range === undefined)
      throw new ConfigError(
        'UNHITCH_CONFIG_INVALID_VALUE',
        `not an address or range: ${JSON.stringify(first[0])}`,
        position((first.index ?? 0) + 1),
        EXPECTED,
      );
    ranges.push(range);
  }
  return ranges;
}

/** One address or CIDR range, IPv4-mapped IPv6 written as IPv4; undefined if malformed. */
export function parseDenyRange(word: string): DenyRange | undefined {
  const slash = word.indexOf('/');
  const address = parseIp(slash === -1 ? word : word.slice(0, slash));
  if (address === undefined || word.includes('%')) return undefined;
  const bits = address.kind() === 'ipv4' ? 32 : 128;
  let prefix = bits;
  if (slash !== -1) {
    const prefixText = word.slice(slash + 1);
    if (!/^[0-9]{1,3}$/.test(prefixText)) return undefined;
    prefix = Number(prefixText);
    if (prefix > bits) return undefined;
  }
  if (address instanceof ipaddr.IPv6 && address.isIPv4MappedAddress() && prefix >= 96)
    return `${address.toIPv4Address().toString()}/${prefix - 96}`;
  return `${address.toString()}/${prefix}`;
}

/** The file named by `deny-file`, read and parsed. */
export function readDenyFile(path: string): DenyRange[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new ConfigError('UNHITCH_CONFIG_FILE', `cannot read deny-file '${path}' (${reason})`);
  }
  return parseDenyList(text, path);
}
