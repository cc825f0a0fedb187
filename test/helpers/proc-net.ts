/**
 * The kernel's view of TCP sockets (Linux /proc/net/tcp), for tests that must see what
 * no process reports: whether, and how many times, 127.0.0.1:port is in LISTEN.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

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

/** The inodes of the sockets in LISTEN on 127.0.0.1:`port` (see socketOwners). */
export function loopbackListenInodes(port: number): string[] {
  const local = loopbackHex(port);
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter((fields) => fields[1] === local && fields[3] === LISTEN)
    .map((fields) => fields[9] ?? '0');
}

/** /proc/net/tcp's form of 127.0.0.1:port. */
function loopbackHex(port: number): string {
  return `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
}

/** The inode of the socket 127.0.0.1:localPort ⇄ 127.0.0.1:remotePort, if it exists. */
export function loopbackSocketInode(localPort: number, remotePort: number): string | undefined {
  const local = loopbackHex(localPort);
  const remote = loopbackHex(remotePort);
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (fields[1] === local && fields[2] === remote && fields[9] !== '0') return fields[9];
  }
  return undefined;
}

/** Every process holding a descriptor of socket `inode`. */
export function socketOwners(inode: string): number[] {
  const owners: number[] = [];
  const link = `socket:[${inode}]`;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue; // gone, or not ours to read
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${entry}/fd/${fd}`) === link) {
          owners.push(Number(entry));
          break;
        }
      } catch {
        // closed meanwhile
      }
    }
  }
  return owners;
}

/** A process's real, effective, saved and filesystem uids, and its parent (/proc/PID/status). */
export function processIdentity(pid: number): { uids: number[]; ppid: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const uids = (/^Uid:\s+(.*)$/m.exec(status)?.[1] ?? '').split(/\s+/).map(Number);
  const ppid = Number(/^PPid:\s+(\d+)$/m.exec(status)?.[1]);
  return { uids, ppid };
}
