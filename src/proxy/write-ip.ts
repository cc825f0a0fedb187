/**
 * Hitch's write-ip (write_ip_octet in hitch.c): before the stream, one octet with the
 * client socket's address family (AF_INET = 2, AF_INET6 = 10 on Linux), then the address as
 * Hitch copies it out of its sockaddr: sin_addr (4 octets) or sin6_addr (16), network order.
 * Hitch's IPv6 listeners are IPV6_V6ONLY, so an IPv4 client is always AF_INET there; our
 * dual-stack socket's '::ffff:a.b.c.d' is unmapped to match.
 */
import { UnhitchError } from '../errors.js';
import { familyOf, ipBytes, peerAddress } from '../net/ip.js';

const AF_INET = 2;
const AF_INET6 = 10;

export function encodeWriteIp(address: string): Buffer {
  const parsed = peerAddress(address);
  if (parsed === undefined) {
    throw new UnhitchError('UNHITCH_WRITE_IP', `not an IP address: ${address}`);
  }
  const family = familyOf(parsed) === 4 ? AF_INET : AF_INET6;
  return Buffer.concat([Buffer.from([family]), ipBytes(parsed)]);
}
