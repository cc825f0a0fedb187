/**
 * Soak: a wt-load-like WebSocket loop (connect, announce with offers, read the answer,
 * close, again) against bittorrent-tracker behind the real unhitch binary, for minutes,
 * printing the worker's RSS and open fds every interval. A leak shows as a climbing row.
 *
 *   node dist/bench/soak.js --minutes=10 [--interval=30] [--concurrency=16] [--workers=1]
 *
 * Bounded by --minutes; the unhitch child is stopped by its PID on exit and on signals.
 * The loop and the /proc readers are exported for the short soak test.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import TrackerServer from 'bittorrent-tracker/server';
import WebSocket from 'ws';
import { makeSelfSigned } from '../src/tls/selfsigned.js';
import { freePort } from './lib/ports.js';

const ROOT = resolve(import.meta.dirname, '../..');
const CLI = resolve(ROOT, 'dist/src/cli.js');

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

export interface ProcessSample {
  readonly rssBytes: number;
  readonly fds: number;
}

/** VmRSS and open fd count of a process, from /proc. */
export function sampleProcess(pid: number): ProcessSample {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!match) throw new Error(`no VmRSS for pid ${pid}`);
  return { rssBytes: Number(match[1]) * 1024, fds: readdirSync(`/proc/${pid}/fd`).length };
}

/** Child pids of `pid` (one level: the cluster's workers), from /proc/<pid>/task/…/children. */
export function childPids(pid: number): number[] {
  const pids: number[] = [];
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    const text = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
    if (text !== '') pids.push(...text.split(/\s+/).map(Number));
  }
  return pids;
}

function flagValue(argv: readonly string[], name: string, fallback: number): number {
  const prefix = `--${name}=`;
  const raw = argv.find((arg) => arg.startsWith(prefix))?.slice(prefix.length);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number`);
  return value;
}

const MiB = 1024 * 1024;

async function main(argv: readonly string[]): Promise<void> {
  const minutes = flagValue(argv, 'minutes', 10);
  const intervalSec = flagValue(argv, 'interval', 30);
  const concurrency = flagValue(argv, 'concurrency', 16);
  const workers = flagValue(argv, 'workers', 1);
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
  let child: ChildProcess | undefined;
  const cleanup = (): void => {
    if (child?.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGTERM');
    tracker.close();
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  process.once('SIGTERM', () => {
    cleanup();
    process.exit(143);
  });
  try {
    child = spawn(
      process.execPath,
      [
        CLI,
        `--frontend=[127.0.0.1]:${port}`,
        `--backend=[127.0.0.1]:${trackerPort}`,
        `--workers=${workers}`,
        '--log-level=warn',
        cert.combinedPath,
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    const primaryPid = child.pid;
    if (primaryPid === undefined) throw new Error('unhitch did not start');
    const deadlineReady = Date.now() + 15_000;
    while (childPids(primaryPid).length < workers) {
      if (Date.now() > deadlineReady || child.exitCode !== null) throw new Error('no workers');
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 500));
    const url = `wss://localhost:${port}/`;
    const totals: LoopTotals = { announces: 0, sessions: 0, errors: 0 };
    const started = Date.now();
    const endAt = started + minutes * 60_000;
    const loop = trackerLoop(url, concurrency, () => Date.now() >= endAt, totals);

    console.log(
      `soak: ${minutes} min, ${concurrency} concurrent sessions, ${workers} worker(s), sample every ${intervalSec} s`,
    );
    console.log('| elapsed s | sessions | announces/s | errors | worker RSS MiB | worker fds |');
    console.log('|---:|---:|---:|---:|---:|---:|');
    let lastAnnounces = 0;
    let lastAt = started;
    const rows: Array<{ rssBytes: number; fds: number }> = [];
    while (Date.now() < endAt) {
      await new Promise((r) => setTimeout(r, Math.min(intervalSec * 1000, endAt - Date.now())));
      const now = Date.now();
      const pids = childPids(primaryPid);
      const samples = pids.map(sampleProcess);
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
    cleanup();
    if (child && child.exitCode === null) await once(child, 'exit');
  }
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : String(error));
    process.exitCode = 1;
  });
}
