/**
 * The kernel's TCP extension counters (/proc/net/netstat, `TcpExt:` lines: a header line of
 * names and a line of values). bench/abuse reads ListenDrops around each row: a SYN or the last
 * ACK of a handshake dropped because a listen queue was full shows in a client's latency as a
 * 1 s (then 3 s) retransmission. The counters are the machine's, not one socket's.
 */
import { readFileSync } from 'node:fs';

/** The `TcpExt:` counters of a /proc/net/netstat text by name. */
export function parseTcpExt(netstat: string): Map<string, number> {
  const lines = netstat.split('\n').filter((line) => line.startsWith('TcpExt:'));
  const names = lines[0]?.split(/\s+/).slice(1) ?? [];
  const values = lines[1]?.split(/\s+/).slice(1) ?? [];
  return new Map(names.map((name, i) => [name, Number(values[i])]));
}

/** The machine's ListenDrops so far; null where /proc/net/netstat cannot be read. */
export function listenDrops(): number | null {
  try {
    return parseTcpExt(readFileSync('/proc/net/netstat', 'utf8')).get('ListenDrops') ?? null;
  } catch {
    return null;
  }
}
