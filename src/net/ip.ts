/**
 * IP addresses as the data plane handles them: a peer address node reports (or a PROXY
 * header carries) parsed once, IPv4-mapped IPv6 unmapped, and written out as bytes (PROXY
 * v2, write-ip) or text (PROXY v1, X-Forwarded-For). The one place that knows these rules.
 *
 * Validation is node's `isIP` (strict inet_pton: dotted quads only, no '127.1' or octal),
 * representation is ipaddr.js. Hitch's v6 listeners are IPV6_V6ONLY, so an IPv4 client
 * reaches Hitch on an AF_INET socket; node's dual-stack sockets report the same client as
 * '::ffff:a.b.c.d'. `peerAddress` undoes that, so we write what Hitch writes.
 */
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

export type IpAddress = ipaddr.IPv4 | ipaddr.IPv6;
export type IpFamily = 4 | 6;

/** `::a.b.c.d` (IPv4-compatible IPv6, RFC 4291 §2.5.5.1). */
const IPV4_COMPATIBLE = /^::(\d+\.\d+\.\d+\.\d+)$/;

/** '%eth0' on link-local addresses: it names our interface and means nothing elsewhere. */
function withoutZone(text: string): string {
  const percent = text.indexOf('%');
  return percent === -1 ? text : text.slice(0, percent);
}

/**
 * A strict IPv4 or IPv6 literal (zone dropped), or undefined. IPv4-mapped addresses stay
 * IPv6 here; see `peerAddress`.
 */
export function parseIp(text: string): IpAddress | undefined {
  const plain = withoutZone(text);
  const family = isIP(plain);
  if (family === 4) return ipaddr.IPv4.parse(plain);
  if (family !== 6) return undefined;
  // ipaddr.js reads '::1.2.3.4' as the IPv4-MAPPED '::ffff:1.2.3.4'; spelled out in full
  // it parses as what it is: 96 zero bits, then 1.2.3.4.
  const compatible = IPV4_COMPATIBLE.exec(plain);
  return ipaddr.IPv6.parse(compatible ? `0:0:0:0:0:0:${compatible[1]}` : plain);
}

/** A peer address with '::ffff:a.b.c.d' unmapped to IPv4 (what Hitch's AF_INET socket sees). */
export function peerAddress(text: string): IpAddress | undefined {
  const parsed = parseIp(text);
  if (parsed instanceof ipaddr.IPv6 && parsed.isIPv4MappedAddress()) return parsed.toIPv4Address();
  return parsed;
}

export function familyOf(address: IpAddress): IpFamily {
  return address instanceof ipaddr.IPv4 ? 4 : 6;
}

/** IPv4 as '::ffff:a.b.c.d', for a header that must carry both sides in one family. */
export function asIPv6(address: IpAddress): ipaddr.IPv6 {
  return address instanceof ipaddr.IPv4 ? address.toIPv4MappedAddress() : address;
}

/** 4 or 16 bytes in network order. */
export function ipBytes(address: IpAddress): Buffer {
  return Buffer.from(address.toByteArray());
}

/** The address in 4 or 16 bytes of network order. */
export function ipFromBytes(bytes: Uint8Array): IpAddress {
  if (bytes.length !== 4 && bytes.length !== 16) {
    throw new RangeError(`an IP address has 4 or 16 bytes, not ${bytes.length}`);
  }
  return ipaddr.fromByteArray([...bytes]);
}

/**
 * Text as inet_ntop (and so Hitch's getnameinfo) writes it: RFC 5952 for IPv6, except that
 * IPv4-mapped and IPv4-compatible addresses end in a dotted quad.
 */
export function ipText(address: IpAddress): string {
  if (address instanceof ipaddr.IPv4) return address.toString();
  const [a, b, c, d, e, f, g] = address.parts;
  const zeroPrefix = a === 0 && b === 0 && c === 0 && d === 0 && e === 0;
  if (zeroPrefix && (f === 0xffff || (f === 0 && g !== 0))) {
    const v4 = ipBytes(address).subarray(12).join('.');
    return f === 0xffff ? `::ffff:${v4}` : `::${v4}`;
  }
  return address.toRFC5952String();
}

/** 127.0.0.0/8, ::1, and 127.x written as '::ffff:127.x'. */
export function isLoopback(address: IpAddress): boolean {
  const unmapped =
    address instanceof ipaddr.IPv6 && address.isIPv4MappedAddress()
      ? address.toIPv4Address()
      : address;
  return unmapped.range() === 'loopback';
}
