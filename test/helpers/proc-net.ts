/**
 * The kernel's view of TCP sockets (Linux /proc/net/tcp), for tests that must see what
 * no process reports: whether, and how many times, 127.0.0.1:port is in LISTEN.
 */
import { readFileSync } from 'node:fs';

const LISTEN = '0A';

/** Sockets in LISTEN on 127.0.0.1:`port` (one per SO_REUSEPORT socket, not per fd). */
export function loopbackListenSockets(port: number): number {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .filter((line) => {
      const fields = line.trim().split(/\s+/);
      return fields[1] === local && fields[3] === LISTEN;
    }).length;
}
