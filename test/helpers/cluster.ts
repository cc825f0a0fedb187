/**
 * The clustered binary in front of an echo backend, as the cluster test files start it:
 * a free loopback port, a certificate, `--log-level=debug`, stopped with SIGKILL after the
 * test, and (with `workers`) resolved once that many workers are ready. Plus what those
 * tests do from outside: one echo round trip, whether a PID has ended, and a primary
 * left without descriptors (so its forks fail for real).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { Writable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { pino } from 'pino';
import { ListenSockets } from '../../src/cluster/listen-sockets.js';
import { Supervisor } from '../../src/cluster/supervisor.js';
import { makeCertificate, type TestCertificate } from '../kit/pki.js';
import { freePort } from '../kit/ports.js';
import { closeBackend, connectClient, startBackend } from '../kit/proxy-fixture.js';
import {
  runToExit,
  type StartOptions,
  startUnhitch,
  type UnhitchLogLine,
  type UnhitchProcess,
} from '../kit/unhitch-process.js';

export interface TestContextLike {
  after(fn: () => unknown): void;
}

export interface ClusterOptions extends StartOptions {
  /** `--workers=N`, and wait until N workers are ready. Unset: no flag, no wait. */
  readonly workers?: number;
  /** More flags, after the frontend/backend/log-level ones. */
  readonly args?: readonly string[];
  /** Default: one self-signed localhost certificate shared by the file. */
  readonly certificate?: TestCertificate;
  /** The backend's handling of each connection; default: echo. */
  readonly backend?: (socket: Socket) => void;
  /** The frontend port; default: a free one. */
  readonly port?: number;
}

export interface RunningCluster {
  readonly unhitch: UnhitchProcess;
  /** The frontend port on 127.0.0.1. */
  readonly port: number;
  readonly backendPort: number;
  /** The args given to the binary (to start it again the same way). */
  readonly args: readonly string[];
}

export const isWorkerReady = (line: UnhitchLogLine): boolean => line.msg === 'worker ready';

let defaultCertificate: TestCertificate | undefined;

export async function startCluster(
  t: TestContextLike,
  options: ClusterOptions = {},
): Promise<RunningCluster> {
  const backend = await startBackend(options.backend ?? ((socket) => socket.pipe(socket)));
  t.after(() => closeBackend(backend));
  defaultCertificate ??= makeCertificate('cluster', ['localhost']);
  const certificate = options.certificate ?? defaultCertificate;
  const port = options.port ?? (await freePort());
  const args = [
    `--frontend=[127.0.0.1]:${port}`,
    `--backend=[127.0.0.1]:${backend.port}`,
    '--log-level=debug',
    ...(options.workers === undefined ? [] : [`--workers=${options.workers}`]),
    ...(options.args ?? []),
    certificate.combinedPath,
  ];
  const unhitch = startUnhitch(args, options);
  t.after(() => unhitch.kill('SIGKILL'));
  if (options.workers !== undefined) await unhitch.waitForLogs(isWorkerReady, options.workers);
  return { unhitch, port, backendPort: backend.port, args };
}

/** One echo round trip on an open connection. */
export async function echo(socket: Socket | TLSSocket, text: string): Promise<string> {
  socket.write(text);
  const [chunk] = (await once(socket, 'data')) as [Buffer];
  return chunk.toString();
}

/** A new TLS connection to `port` serves: one echo round trip, then closed. */
export async function assertServes(port: number, text = 'ping'): Promise<void> {
  const client = await connectClient(port);
  try {
    assert.equal(await echo(client, text), text);
  } finally {
    client.destroy();
  }
}

/**
 * True once process `pid` has ended: gone from /proc, or a zombie with every thread gone
 * (the last thread out closed its descriptors; the main thread alone turns Z first while
 * node's other threads still exit). A process whose parent is gone may stay unreaped.
 */
export function processEnded(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state === 'Z' && readdirSync(`/proc/${pid}/task`).length <= 1;
  } catch {
    return true;
  }
}

/** The soft RLIMIT_NOFILE of process `pid` (/proc/PID/limits). */
function softNofile(pid: number): string {
  const line = readFileSync(`/proc/${pid}/limits`, 'utf8')
    .split('\n')
    .find((entry) => entry.startsWith('Max open files'));
  const soft = line?.split(/\s{2,}/)[1];
  assert.ok(soft, `no open-files limit for ${pid}`);
  return soft;
}

/**
 * Leaves process `pid` no descriptor to open (soft RLIMIT_NOFILE 3, below every fd it
 * holds: any open, socket, pipe or fork fails with EMFILE) until the returned function
 * puts its limit back. The hard limit is kept, so raising it again needs no privilege.
 */
export async function exhaustDescriptors(pid: number): Promise<() => Promise<void>> {
  const soft = softNofile(pid);
  await prlimitNofile(pid, '3');
  let restored = false;
  return async () => {
    if (restored) return;
    restored = true;
    await prlimitNofile(pid, soft);
  };
}

async function prlimitNofile(pid: number, soft: string): Promise<void> {
  const result = await runToExit('prlimit', ['--pid', String(pid), `--nofile=${soft}:`]);
  assert.equal(result.status, 0, `prlimit: ${result.stderr}`);
}

/** A Supervisor in the test's own process (the test is the primary), its log lines kept. */
export function supervisorInProcess(): {
  readonly supervisor: Supervisor;
  readonly lines: Record<string, unknown>[];
} {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString('utf8')) as Record<string, unknown>);
      done();
    },
  });
  const supervisor = new Supervisor({
    logger: pino(sink),
    allowedCpus: [0],
    ticketKey: () => Buffer.alloc(80),
    sockets: new ListenSockets(),
  });
  return { supervisor, lines };
}
