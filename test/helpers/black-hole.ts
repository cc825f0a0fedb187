/**
 * A loopback TCP port that never answers a SYN: a python3 listener with listen(0) that
 * never accepts, its one-slot accept queue filled by a connection of ours. The kernel then
 * drops every further SYN, so a connect() to it hangs until its timeout, as to a host that
 * is down.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';

/** Safety net: the listener outlives no test by more than this. */
const LISTENER_LIFETIME_S = 120;

export interface BlackHole {
  readonly port: number;
  close(): void;
}

export async function startBlackHole(): Promise<BlackHole> {
  const child = spawn(
    'python3',
    [
      '-c',
      `import socket,time\ns=socket.socket();s.bind(("127.0.0.1",0));s.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(${LISTENER_LIFETIME_S})`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const [line] = (await once(child.stdout, 'data')) as [Buffer];
  const port = Number(line.toString().trim());
  const filler: Socket = netConnect(port, '127.0.0.1');
  filler.on('error', () => {});
  // Once this one is queued the queue is full (Linux allows backlog + 1 = 1 entry).
  await once(filler, 'connect');
  return {
    port,
    close() {
      filler.destroy();
      child.kill('SIGKILL');
    },
  };
}
