import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TLSSocket } from 'node:tls';
import { type HeapTally, heapCensus } from '../../test/kit/heap-census.js';
import { makeCertificate } from '../../test/kit/pki.js';
import { freePort } from '../../test/kit/ports.js';
import {
  closeBackend,
  connectClient,
  startBackend,
  waitFor,
} from '../../test/kit/proxy-fixture.js';
import { startSingleWorker } from '../../test/kit/unhitch-process.js';
/**
 * The JS heap an idle proxied connection keeps in the worker: heap snapshots (taken after a
 * full GC) of a one-worker unhitch before and after opening N idle TLS connections, the
 * difference divided by N, with the kinds of object that make it up. The figures behind
 * bench/PERF-STEPS.md's per-connection attribution (Node 24 memory).
 *
 * `--server=node-tls-bare` measures bench/lib/node-tls-bare.js instead (node:tls alone, no
 * backend; its clients here never send the WebSocket upgrade, so its one `onData` closure and
 * context per connection stay): the floor unhitch's own share is counted from.
 *
 *   node dist/bench/idle-heap.js [--connections=2000] [--top=25] [--server=unhitch|node-tls-bare]
 */
import { parseFlags, positiveFlag } from '../lib/cli-args.js';
import { REPO_ROOT } from '../lib/proxies.js';

const FLAGS = ['connections', 'top', 'server'] as const;
const PARALLEL = 50;

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2), FLAGS);
  const connections = positiveFlag(flags, 'connections', 2000);
  const top = positiveFlag(flags, 'top', 25);
  const server = flags.get('server') ?? 'unhitch';
  if (server !== 'unhitch' && server !== 'node-tls-bare')
    throw Object.assign(new Error('--server must be unhitch or node-tls-bare'), {
      code: 'BENCH_BAD_ARGUMENT',
    });
  const backend = await startBackend((socket) => socket.on('error', () => {}));
  const census = heapCensus();
  const cert = makeCertificate('idle-heap', ['localhost']);
  const serving =
    server === 'unhitch'
      ? await startUnhitch(backend.port, cert.combinedPath, census.nodeOptions)
      : await startBare(cert.combinedPath, census.nodeOptions);
  const { port, workerPid } = serving;
  // The bare server has no backend: the count of its accepted connections stands in.
  const served = (): number => (server === 'unhitch' ? backend.sockets.size : clients.length);
  const clients: TLSSocket[] = [];
  try {
    // One connection first, so that lazily built state (code, caches) is in both snapshots.
    clients.push(await connectClient(port));
    await waitFor(() => served() === 1, 10_000, 'the first connection');
    const before = await census.tally(workerPid, 120_000);
    while (clients.length < connections + 1) {
      const batch = Math.min(PARALLEL, connections + 1 - clients.length);
      clients.push(
        ...(await Promise.all(Array.from({ length: batch }, () => connectClient(port)))),
      );
    }
    await waitFor(() => served() === connections + 1, 60_000, `${connections} backend connections`);
    const after = await census.tally(workerPid, 120_000);
    report(before, after, connections, top);
  } finally {
    for (const client of clients) client.destroy();
    serving.kill();
    closeBackend(backend);
    census.cleanup();
  }
}

interface Serving {
  readonly port: number;
  /** The process whose heap is counted. */
  readonly workerPid: number;
  kill(): void;
}

async function startUnhitch(
  backendPort: number,
  pemPath: string,
  nodeOptions: string,
): Promise<Serving> {
  const { unhitch, port, workerPid } = await startSingleWorker(backendPort, pemPath, [], {
    env: { NODE_OPTIONS: nodeOptions },
  });
  return { port, workerPid, kill: () => unhitch.kill('SIGKILL') };
}

async function startBare(pemPath: string, nodeOptions: string): Promise<Serving> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [join(REPO_ROOT, 'dist', 'bench', 'lib', 'node-tls-bare.js'), String(port), pemPath],
    { env: { ...process.env, NODE_OPTIONS: nodeOptions }, stdio: 'inherit' },
  );
  const pid = child.pid;
  if (pid === undefined) throw new Error('node-tls-bare did not start');
  // Listening once a TCP connect succeeds.
  for (let attempt = 0; ; attempt++) {
    const up = await new Promise<boolean>((resolve) => {
      const probe = connect(port, '127.0.0.1', () => {
        probe.destroy();
        resolve(true);
      });
      probe.on('error', () => resolve(false));
    });
    if (up) break;
    if (attempt > 100) {
      child.kill('SIGKILL');
      throw new Error('node-tls-bare did not listen');
    }
    await sleep(100);
  }
  return { port, workerPid: pid, kill: () => child.kill('SIGKILL') };
}

function report(before: HeapTally, after: HeapTally, connections: number, top: number): void {
  const perConnection = (bytes: number): string => (bytes / connections).toFixed(1);
  console.log(
    `${process.version}: JS heap per idle connection ${((after.totalBytes - before.totalBytes) / connections / 1024).toFixed(2)} KiB (${connections} connections)`,
  );
  const rows = [...after.byKind]
    .map(([kind, { count, bytes }]) => {
      const was = before.byKind.get(kind) ?? { count: 0, bytes: 0 };
      return { kind, count: count - was.count, bytes: bytes - was.bytes };
    })
    .filter((row) => row.bytes !== 0)
    .sort((a, b) => b.bytes - a.bytes)
    .slice(0, top);
  console.log('bytes/conn  objects/conn  kind');
  for (const row of rows)
    console.log(
      `${perConnection(row.bytes).padStart(10)}  ${(row.count / connections).toFixed(2).padStart(12)}  ${row.kind}`,
    );
}

await main();
