/**
 * How node:cluster hands out connections: the primary's round robin (SCHED_RR, Node's
 * default) against shared-handle mode (SCHED_NONE, what unhitch uses; Node 20 has no
 * reusePort). Each mode runs in its own child: a primary plus N workers terminating TLS,
 * while this process opens --connections TLS connections (--concurrency at a time).
 * Prints connections/s, how evenly workers were loaded, and the primary's CPU.
 *
 *   node dist/bench/accept-modes.js [--connections=6000] [--concurrency=50] [--workers=2]
 */
import { type ChildProcess, fork } from 'node:child_process';
import cluster from 'node:cluster';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { makeSelfSigned } from '../src/tls/selfsigned.js';
import { machineDescription } from './lib/machine.js';
import { updateResultsFile } from './lib/results-file.js';

const RESULTS = fileURLToPath(new URL('../../bench/RESULTS.md', import.meta.url));

type Mode = 'rr' | 'none';

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
  cluster.setupPrimary({ args: ['--worker', pemPath] });
  const counts = new Map<number, number>();
  const pids: number[] = [];
  let ready = 0;
  for (let index = 0; index < workers; index++) {
    const worker = cluster.fork();
    pids.push(worker.process.pid as number);
    worker.on('message', (message: { type: string; port?: number; accepted?: number }) => {
      if (message.type === 'listening') {
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

function runWorker(pemPath: string): void {
  const pem = readFileSync(pemPath);
  let accepted = 0;
  const server = createServer({ key: pem, cert: pem }, (socket) => {
    accepted += 1;
    socket.end('x');
    socket.on('error', () => {});
  });
  // Port 0 in a cluster: every worker shares the one port the first listen picked.
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    process.send?.({
      type: 'listening',
      port: typeof address === 'object' && address ? address.port : 0,
    });
  });
  process.on('message', (message: { type: string }) => {
    if (message.type === 'count') process.send?.({ type: 'count', accepted });
  });
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

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    options: {
      child: { type: 'string' },
      worker: { type: 'boolean' },
      workers: { type: 'string', default: '2' },
      connections: { type: 'string', default: '6000' },
      concurrency: { type: 'string', default: '50' },
      'no-write': { type: 'boolean', default: false },
    },
    allowPositionals: true,
  });
  if (cluster.isWorker) {
    runWorker(positionals[0] as string);
    return;
  }
  if (values.child) {
    await runClusterChild(values.child as Mode, Number(values.workers), positionals[0] as string);
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-accept-'));
  try {
    const pem = makeSelfSigned({ dir }).combinedPath;
    const options = {
      connections: Number(values.connections),
      concurrency: Number(values.concurrency),
      workers: Number(values.workers),
      pem,
    };
    const rows = [];
    for (const mode of ['rr', 'none'] as const) rows.push(await measure(mode, options));
    const lines = [
      `${options.connections} TLS connections, ${options.concurrency} at a time, ${options.workers} workers`,
      '',
      '| Mode | Connections/s | Failed | Per worker | Primary CPU ms | Workers CPU ms |',
      '| --- | --- | --- | --- | --- | --- |',
      ...rows.map((row) => {
        const label =
          row.mode === 'rr' ? 'SCHED_RR (primary accepts)' : 'SCHED_NONE (shared handle)';
        return `| ${label} | ${(options.connections / row.seconds).toFixed(0)} | ${row.failed} | ${row.perWorker.join(' / ')} | ${row.primaryCpuMs.toFixed(0)} | ${row.workersCpuMs.toFixed(0)} |`;
      }),
    ];
    console.log(`\n${lines.join('\n')}`);
    if (!values['no-write']) {
      updateResultsFile(
        RESULTS,
        'accept-modes',
        [
          '## accept-modes: how node:cluster distributes connections',
          '',
          `Command: \`node dist/bench/accept-modes.js ${process.argv.slice(2).join(' ')}\``,
          '',
          ...machineDescription(),
          '',
          ...lines,
        ].join('\n'),
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
