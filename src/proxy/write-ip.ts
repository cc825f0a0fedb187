/**
 * Hitch's write-ip: before the stream, one octet with the address family (AF_INET = 2,
 * AF_INET6 = 10 on Linux) followed by the client address in 4 or 16 octets, network
 * order, as Hitch copies it out of its sockaddr.
 */
import { isIPv4, isIPv6 } from 'node:net';

const AF_INET = 2;
const AF_INET6 = 10;

export function encodeWriteIp(address: string): Buffer {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  const v4 = mapped ?? (isIPv4(address) ? address : undefined);
  if (v4 !== undefined) return Buffer.from([AF_INET, ...v4.split('.').map(Number)]);
  if (isIPv6(address)) return Buffer.concat([Buffer.from([AF_INET6]), ipv6Bytes(address)]);
  throw Object.assign(new Error(`not an IP address: ${address}`), { code: 'UNHITCH_WRITE_IP' });
}

function ipv6Bytes(address: string): Buffer {
  const [head = '', tail = ''] = address.split('::');
  const groups = (part: string): number[] =>
    part === '' ? [] : part.split(':').map((g) => Number.parseInt(g, 16));
  const left = groups(head);
  const right = address.includes('::') ? groups(tail) : [];
  const middle = new Array<number>(8 - left.length - right.length).fill(0);
  const all = [...left, ...middle, ...right];
  const out = Buffer.alloc(16);
  for (const [index, group] of all.entries()) out.writeUInt16BE(group, index * 2);
  return out;
}
