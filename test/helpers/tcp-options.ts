/**
 * The TCP options another process set on its sockets, read from the live sockets: python3
 * takes a duplicate of each descriptor with pidfd_getfd(2) and asks getsockopt(2). Node has
 * no getsockopt, and strace only shows what was asked for, not what a socket ends up with.
 * Needs ptrace rights over the target (root, as in CI); otherwise it throws EPERM.
 */
import { execFileSync } from 'node:child_process';

export interface TcpSocketOptions {
  readonly localPort: number;
  readonly remotePort: number;
  readonly noDelay: boolean;
  readonly keepAlive: boolean;
  /** TCP_KEEPIDLE, seconds. */
  readonly keepIdleSec: number;
}

const SCRIPT = `
import ctypes, json, os, socket, sys
pid = int(sys.argv[1])
SYS_PIDFD_GETFD = 438  # the same number on every architecture (syscalls >= 424 are shared)
inodes = {}
for table in ('tcp', 'tcp6'):
    with open(f'/proc/{pid}/net/{table}') as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[3] != '01':  # ESTABLISHED only
                continue
            local = int(fields[1].rsplit(':', 1)[1], 16)
            remote = int(fields[2].rsplit(':', 1)[1], 16)
            inodes[fields[9]] = (local, remote)
libc = ctypes.CDLL(None, use_errno=True)
pidfd = os.pidfd_open(pid)
found = []
for name in os.listdir(f'/proc/{pid}/fd'):
    try:
        target = os.readlink(f'/proc/{pid}/fd/{name}')
    except OSError:
        continue
    if not target.startswith('socket:['):
        continue
    inode = target[8:-1]
    if inode not in inodes:
        continue
    fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(name), 0)
    if fd < 0:
        raise OSError(ctypes.get_errno(), 'pidfd_getfd')
    s = socket.socket(fileno=fd)
    try:
        found.append({
            'localPort': inodes[inode][0],
            'remotePort': inodes[inode][1],
            'noDelay': s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0,
            'keepAlive': s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0,
            'keepIdleSec': s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        })
    finally:
        s.close()
print(json.dumps(found))
`;

/** Every ESTABLISHED TCP socket of `pid`, with the options that matter to a proxy. */
export function tcpSocketOptions(pid: number): TcpSocketOptions[] {
  return JSON.parse(
    execFileSync('python3', ['-c', SCRIPT, String(pid)], { encoding: 'utf8' }),
  ) as TcpSocketOptions[];
}
