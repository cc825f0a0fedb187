/**
 * How connections reach the workers: node:cluster's round robin (SCHED_RR, Node's
 * default: the primary accepts and passes each socket over IPC), its shared-handle mode
 * (SCHED_NONE: one socket, every worker accepts from it; what unhitch did before), and
 * per-worker SO_REUSEPORT sockets (what unhitch does: the primary binds one socket per
 * worker with cluster/listen-sockets.ts and hands it over; the kernel hashes each client
 * to one of them). Each mode runs in its own child: a primary plus N workers terminating
 * TLS, while this process opens --connections TLS connections (--concurrency at a time).
 * Prints connections/s, how evenly workers were loaded, and CPU per connection.
 *
 *   node dist/bench/accept-modes.js [--connections=6000] [--concurrency=50] [--workers=2]
 *                                   [--modes=rr,none,reuseport] [--no-write]
 */
import { type ChildProcess, fork } from 'node:child_process';
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { connect, createServer } from 'node:tls';
import { parseArgs } from 'node:util';
import { ListenSockets } from '../../src/cluster/listen-sockets.js';
import { makeSelfSigned } from '../../src/tls/selfsigned.js';
import { listFlag, numberFlag } from '../lib/cli-args.js';
import { runBench } from '../lib/harness.js';
import { formatMarkdownTable } from '../lib/table.js';

const MODES = ['rr', 'none', 'reuseport'] as const;
type Mode = (typeof MODES)[number];

const MODE_LABELS: Record<Mode, string> = {
  rr: 'SCHED_RR (primary accepts)',
  none: 'SCHED_NONE (shared handle)',
  reuseport: 'SO_REUSEPORT per worker (unhitch)',
};

interface ChildReport {
  readonly perWorker: number[];
  readonly primaryCpuMs: number;
  readonly workersCpuMs: number;
}

const CLK_TCK = 100;

function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}

/** Child: a cluster primary in the given mode, reporting counts and CPU on request. */
async function runClusterChild(mode: Mode, workers: number, pemPath: string): Promise<void> {
  cluster.schedulingPolicy = mode === 'rr' ? cluster.SCHED_RR : cluster.SCHED_NONE;
  cluster.setupPrimary({ args: ['--worker', '--mode', mode, pemPath] });
  const sockets = new ListenSockets();
  const counts = new Map<number, number>();
  const pids: number[] = [];
  let ready = 0;
  for (let index = 0; index < workers; index++) {
    const worker = cluster.fork();
    pids.push(worker.process.pid as number);
    worker.on('message', (message: { type: string; port?: number; accepted?: number }) => {
      if (message.type === 'hello' && mode === 'reuseport') {
        // As unhitch's supervisor does: this worker's own socket, bound here.
        void sockets
          .socketFor({ kind: 'tcp', host: '127.0.0.1', port: 0 }, index)
          .then((handle) => worker.send({ type: 'socket' }, handle as never));
      } else if (message.type === 'listening') {
        ready += 1;
        if (ready === workers) process.send?.({ type: 'ready', port: message.port });
      } else if (message.type === 'count') {
        counts.set(worker.id, message.accepted ?? 0);
      }
    });
  }
  const startCpu = { primary: 0, workers: 0 };
  process.on('message', async (message: { type: string }) => {
    if (message.type === 'start') {
      startCpu.primary = cpuMs(process.pid);
      startCpu.workers = pids.reduce((sum, pid) => sum + cpuMs(pid), 0);
    } else if (message.type === 'report') {
      for (const worker of Object.values(cluster.workers ?? {})) worker?.send({ type: 'count' });
      await new Promise((resolve) => setTimeout(resolve, 200));
      const report: ChildReport = {
        perWorker: [...counts.values()],
        primaryCpuMs: cpuMs(process.pid) - startCpu.primary,
        workersCpuMs: pids.reduce((sum, pid) => sum + cpuMs(pid), 0) - startCpu.workers,
      };
      process.send?.({ type: 'report', report });
      for (const worker of Object.values(cluster.workers ?? {})) worker?.kill();
      setTimeout(() => process.exit(0), 100);
    }
  });
}

function runWorker(pemPath: string, mode: Mode): void {
  const pem = readFileSync(pemPath);
  let accepted = 0;
  const server = createServer({ key: pem, cert: pem }, (socket) => {
    accepted += 1;
    socket.end('x');
    socket.on('error', () => {});
  });
  const reportListening = (): void => {
    const address = server.address();
    process.send?.({
      type: 'listening',
      port: typeof address === 'object' && address ? address.port : 0,
    });
  };
  process.on('message', (message: { type: string }, handle: unknown) => {
    if (message.type === 'count') process.send?.({ type: 'count', accepted });
    // reuseport: listen on our own socket, handed over by the primary.
    else if (message.type === 'socket') server.listen(handle as never, reportListening);
  });
  // Port 0 in a cluster: every worker shares the one port the first listen picked.
  if (mode === 'reuseport') process.send?.({ type: 'hello' });
  else server.listen(0, '127.0.0.1', reportListening);
}

async function openConnections(port: number, total: number, concurrency: number): Promise<number> {
  let started = 0;
  let failed = 0;
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const socket = connect({ port, host: '127.0.0.1', rejectUnauthorized: false });
      socket.on('data', () => {});
      socket.once('end', () => {
        socket.end();
        resolve();
      });
      socket.once('error', () => {
        failed += 1;
        resolve();
      });
    });
  const lanes = Array.from({ length: concurrency }, async () => {
    while (started < total) {
      started += 1;
      await one();
    }
  });
  await Promise.all(lanes);
  return failed;
}

function waitFor<T>(child: ChildProcess, type: string): Promise<T> {
  return new Promise((resolve) => {
    const onMessage = (message: { type: string } & T): void => {
      if (message.type !== type) return;
      child.off('message', onMessage);
      resolve(message);
    };
    child.on('message', onMessage);
  });
}

async function measure(
  mode: Mode,
  options: { connections: number; concurrency: number; workers: number; pem: string },
) {
  const child = fork(
    process.argv[1] as string,
    ['--child', mode, '--workers', String(options.workers), options.pem],
    {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    },
  );
  try {
    const { port } = await waitFor<{ port: number }>(child, 'ready');
    child.send({ type: 'start' });
    const started = performance.now();
    const failed = await openConnections(port, options.connections, options.concurrency);
    const seconds = (performance.now() - started) / 1000;
    child.send({ type: 'report' });
    const { report } = await waitFor<{ report: ChildReport }>(child, 'report');
    return { mode, seconds, failed, ...report };
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}

/** The children's own arguments (a cluster primary per mode, and its workers). */
function childArgs() {
  return parseArgs({
    options: {
      child: { type: 'string' },
      worker: { type: 'boolean' },
      workers: { type: 'string', default: '2' },
      mode: { type: 'string' },
    },
    allowPositionals: true,
  });
}

if (cluster.isWorker) {
  const { values, positionals } = childArgs();
  runWorker(positionals[0] as string, values.mode as Mode);
} else if (process.argv[2] === '--child') {
  const { values, positionals } = childArgs();
  await runClusterChild(values.child as Mode, Number(values.workers), positionals[0] as string);
} else {
  runBench({
    name: 'accept-modes',
    flags: ['connections', 'concurrency', 'workers', 'modes', 'no-write'],
    defaultProxies: [],
    run: async (bench) => {
      const options = {
        connections: numberFlag(bench.flags, 'connections', 6000),
        concurrency: numberFlag(bench.flags, 'concurrency', 50),
        workers: numberFlag(bench.flags, 'workers', 2),
        pem: makeSelfSigned({ dir: bench.workDirectory }).combinedPath,
      };
      const modes = listFlag(bench.flags, 'modes', MODES);
      for (const mode of modes) {
        if (!(MODES as readonly string[]).includes(mode))
          throw new Error(`unknown mode ${mode}; modes are ${MODES.join(', ')}`);
      }
      const rows = [];
      for (const mode of modes as Mode[]) rows.push(await measure(mode, options));
      const meta = `${options.connections} TLS connections, ${options.concurrency} at a time, ${options.workers} workers`;
      const table = formatMarkdownTable(
        [
          'Mode',
          'Connections/s',
          'Failed',
          'Per worker',
          'Busiest worker',
          'Primary CPU ms',
          'Workers CPU ms',
          'CPU µs per connection',
        ],
        rows.map((row) => {
          const served = row.perWorker.reduce((sum, count) => sum + count, 0);
          const busiest = served > 0 ? (100 * Math.max(...row.perWorker)) / served : 0;
          const cpuPerConnection =
            ((row.primaryCpuMs + row.workersCpuMs) * 1000) / options.connections;
          return [
            MODE_LABELS[row.mode],
            (options.connections / row.seconds).toFixed(0),
            String(row.failed),
            row.perWorker.join(' / '),
            `${busiest.toFixed(0)} %`,
            row.primaryCpuMs.toFixed(0),
            row.workersCpuMs.toFixed(0),
            cpuPerConnection.toFixed(0),
          ];
        }),
      );
      return {
        stdout: `${meta}\n\n${table}`,
        results: {
          heading:
            '## accept-modes: how connections reach the workers (round robin, shared handle, SO_REUSEPORT)',
          notes: [],
          blocks: [meta, table],
        },
      };
    },
  });
}
