/**
 * Soak: a wt-load-like WebSocket loop (connect, announce with offers, read the answer,
 * close, again) against bittorrent-tracker behind the real unhitch binary, for minutes,
 * printing the worker's RSS and open fds every interval. A leak shows as a climbing row.
 *
 *   node dist/bench/soak.js --minutes=10 [--interval=30] [--concurrency=16] [--workers=1]
 *
 * Bounded by --minutes; the unhitch tree is stopped by PID on exit and on signals (the bench
 * process harness). The loop is exported for the short soak test.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import TrackerServer from 'bittorrent-tracker/server';
import WebSocket from 'ws';
import { makeSelfSigned } from '../src/tls/selfsigned.js';
import { parseFlags, positiveFlag } from './lib/cli-args.js';
import { freePort, waitForPort } from './lib/ports.js';
import { processTree, sampleProcess } from './lib/proc.js';
import {
  type BenchProcess,
  installCleanup,
  startProcess,
  stopProcess,
  untilReady,
} from './lib/processes.js';
import { unhitchArgs } from './lib/proxies.js';
import { runtimeLines } from './lib/runtimes.js';

export interface LoopTotals {
  /** Announce responses received. */
  announces: number;
  /** WebSocket sessions opened and closed. */
  sessions: number;
  /** Sessions that ended in an error or timeout instead of a response. */
  errors: number;
}

const binaryId = () => randomBytes(20).toString('latin1');

/** One session: open, announce with `offers` offers, wait for the response, close. */
function announceSession(url: string, offers: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolveSession) => {
    const socket = new WebSocket(url, { rejectUnauthorized: false, perMessageDeflate: false });
    let settled = false;
    const settle = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (ok) socket.close();
      else socket.terminate();
      resolveSession(ok);
    };
    const timer = setTimeout(() => settle(false), timeoutMs);
    socket.on('error', () => settle(false));
    socket.once('open', () => {
      socket.send(
        JSON.stringify({
          action: 'announce',
          info_hash: binaryId(),
          peer_id: binaryId(),
          numwant: offers,
          uploaded: 0,
          downloaded: 0,
          left: 0,
          event: 'started',
          offers: Array.from({ length: offers }, () => ({
            offer_id: binaryId(),
            offer: { type: 'offer', sdp: `v=0\r\n${'a=x'.repeat(100)}` },
          })),
        }),
      );
    });
    socket.once('message', (data) => {
      const text = String(data);
      settle(text.includes('"action":"announce"') && !text.includes('failure reason'));
    });
  });
}

/** `concurrency` sessions back to back until `shouldStop()`; counts into `totals`. */
export async function trackerLoop(
  url: string,
  concurrency: number,
  shouldStop: () => boolean,
  totals: LoopTotals,
): Promise<void> {
  const lane = async (): Promise<void> => {
    while (!shouldStop()) {
      const ok = await announceSession(url, 2, 5_000);
      totals.sessions += 1;
      if (ok) totals.announces += 1;
      else totals.errors += 1;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
}

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
  let unhitch: BenchProcess | undefined;
  try {
    unhitch = startProcess({
      name: 'unhitch',
      command: process.execPath,
      args: unhitchArgs({
        frontendPort: port,
        backendPort: trackerPort,
        workers,
        logLevel: 'warn',
        pemPath: cert.combinedPath,
      }),
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
    console.log('| elapsed s | sessions | announces/s | errors | worker RSS MiB | worker fds |');
    console.log('|---:|---:|---:|---:|---:|---:|');
    let lastAnnounces = 0;
    let lastAt = started;
    const rows: Array<{ rssBytes: number; fds: number }> = [];
    while (Date.now() < endAt) {
      await sleep(Math.min(intervalSec * 1000, endAt - Date.now()));
      const now = Date.now();
      const samples = workerPids().map(sampleProcess);
      const rss = samples.reduce((sum, sample) => sum + sample.rssBytes, 0);
      const fds = samples.reduce((sum, sample) => sum + sample.fds, 0);
      rows.push({ rssBytes: rss, fds });
      const rate = ((totals.announces - lastAnnounces) * 1000) / Math.max(now - lastAt, 1);
      lastAnnounces = totals.announces;
      lastAt = now;
      console.log(
        `| ${Math.round((now - started) / 1000)} | ${totals.sessions} | ${rate.toFixed(0)} | ${totals.errors} | ${(rss / MiB).toFixed(1)} | ${fds} |`,
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

if (process.argv[1] !== undefined && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : String(error));
    process.exitCode = 1;
  });
}
