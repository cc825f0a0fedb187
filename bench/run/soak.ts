/**
 * Soak: a wt-load-like WebSocket loop (connect, announce with offers, read the answer,
 * close, again) against bittorrent-tracker behind the real unhitch binary, for minutes,
 * printing the workers' RSS, V8 heap, RSS beyond the heap's high-water and open fds every
 * interval. RSS climbs while V8's old generation grows to its first mark-compact (how long
 * that takes depends on the rate); a native leak shows as a climbing "beyond heap" column
 * (test/kit/worker-memory.ts).
 *
 *   node dist/bench/soak.js --minutes=10 [--interval=30] [--concurrency=16] [--workers=1]
 *
 * Bounded by --minutes; the unhitch tree is stopped by PID on exit and on signals (the bench
 * process harness). The loop (test/kit/tracker-loop.ts) is the short soak test's too.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import TrackerServer from 'bittorrent-tracker/server';
import { makeSelfSigned } from '../../src/tls/selfsigned.js';
import { freePort, waitForPort } from '../../test/kit/ports.js';
import { processTree, sampleProcess } from '../../test/kit/proc.js';
import { type LoopTotals, trackerLoop } from '../../test/kit/tracker-loop.js';
import { workersHeapCommittedBytes } from '../../test/kit/worker-memory.js';
import { parseFlags, positiveFlag } from '../lib/cli-args.js';
import {
  type BenchProcess,
  installCleanup,
  startProcess,
  stopProcess,
  untilReady,
} from '../lib/processes.js';
import { unhitchArgs } from '../lib/proxies.js';
import { runtimeLines } from '../lib/runtimes.js';

const FLAGS = ['minutes', 'interval', 'concurrency', 'workers'] as const;
const MiB = 1024 * 1024;

async function main(argv: readonly string[]): Promise<void> {
  const flags = parseFlags(argv, FLAGS);
  const minutes = positiveFlag(flags, 'minutes', 10);
  const intervalSec = positiveFlag(flags, 'interval', 30);
  const concurrency = positiveFlag(flags, 'concurrency', 16);
  const workers = positiveFlag(flags, 'workers', 1);
  installCleanup();
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-soak-'));
  const cert = makeSelfSigned({
    dir,
    stem: 'soak',
    commonName: 'localhost',
    dnsNames: ['localhost'],
  });

  const tracker = new TrackerServer({ udp: false, http: false, ws: true, stats: false });
  const trackerPort = await freePort();
  await new Promise<void>((done) => tracker.listen(trackerPort, '127.0.0.1', done));
  const port = await freePort();
  const metricsPort = await freePort();
  let unhitch: BenchProcess | undefined;
  try {
    unhitch = startProcess({
      name: 'unhitch',
      command: process.execPath,
      args: [
        ...unhitchArgs({
          frontendPort: port,
          backendPort: trackerPort,
          workers,
          logLevel: 'warn',
          pemPath: cert.combinedPath,
        }),
        `--metrics=127.0.0.1:${metricsPort}`,
      ],
      echoStderr: true,
    });
    await untilReady(unhitch, waitForPort(port, 15_000));
    const primaryPid = unhitch.pid;
    // Serving means one worker listens; the others may still be starting.
    const workerPids = (): number[] => processTree(primaryPid).slice(1);
    const deadlineReady = Date.now() + 15_000;
    while (workerPids().length < workers) {
      if (Date.now() > deadlineReady) throw new Error(`fewer than ${workers} workers started`);
      await sleep(100);
    }
    const url = `wss://localhost:${port}/`;
    const totals: LoopTotals = { announces: 0, sessions: 0, errors: 0 };
    const started = Date.now();
    const endAt = started + minutes * 60_000;
    const loop = trackerLoop(url, concurrency, () => Date.now() >= endAt, totals);

    console.log(
      `soak: ${minutes} min, ${concurrency} concurrent sessions, ${workers} worker(s), sample every ${intervalSec} s`,
    );
    console.log(runtimeLines().join('\n'));
    console.log(
      '| elapsed s | sessions | announces/s | errors | worker RSS MiB | V8 heap MiB | RSS beyond heap MiB | worker fds |',
    );
    console.log('|---:|---:|---:|---:|---:|---:|---:|---:|');
    let heapHighWater = 0;
    let lastAnnounces = 0;
    let lastAt = started;
    const rows: Array<{ rssBytes: number; fds: number }> = [];
    while (Date.now() < endAt) {
      await sleep(Math.min(intervalSec * 1000, endAt - Date.now()));
      const now = Date.now();
      const samples = workerPids().map(sampleProcess);
      const rss = samples.reduce((sum, sample) => sum + sample.rssBytes, 0);
      const fds = samples.reduce((sum, sample) => sum + sample.fds, 0);
      const heap = await workersHeapCommittedBytes(metricsPort);
      heapHighWater = Math.max(heapHighWater, heap);
      rows.push({ rssBytes: rss, fds });
      const rate = ((totals.announces - lastAnnounces) * 1000) / Math.max(now - lastAt, 1);
      lastAnnounces = totals.announces;
      lastAt = now;
      console.log(
        `| ${Math.round((now - started) / 1000)} | ${totals.sessions} | ${rate.toFixed(0)} | ${totals.errors} | ${(rss / MiB).toFixed(1)} | ${(heap / MiB).toFixed(1)} | ${((rss - heapHighWater) / MiB).toFixed(1)} | ${fds} |`,
      );
    }
    await loop;
    const first = rows[0];
    const last = rows[rows.length - 1];
    if (first && last) {
      console.log(
        `RSS ${(first.rssBytes / MiB).toFixed(1)} → ${(last.rssBytes / MiB).toFixed(1)} MiB, fds ${first.fds} → ${last.fds}, ${totals.sessions} sessions, ${totals.errors} errors`,
      );
    }
  } finally {
    if (unhitch) await stopProcess(unhitch);
    tracker.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

// Imported only by its entry, bench/soak.ts: it runs on import.
main(process.argv.slice(2)).catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : String(error));
  process.exitCode = 1;
});
