/**
 * Churn: 10^5 short TLS connections (full handshake, one echo round trip, clean close)
 * through the real binary with one worker; afterwards the worker's open fds and RSS must
 * be back at their post-warm-up baseline. The long version of
 * test/integration/churn.test.ts, for a quiet machine.
 *
 *   node dist/bench/churn.js [--connections=100000] [--parallel=24] [--max-minutes=6] [--no-write]
 *
 * Exit code 1 on any failed connection, fds or RSS not back at baseline, a worker restart or
 * a proxy-side failure log line. The unhitch child is stopped by PID on every exit path.
 */
import { rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { makeSelfSigned } from '../../src/tls/selfsigned.js';
import {
  type ChurnCounts,
  churn,
  LEAK_SLACK,
  WARMUP_CONNECTIONS,
  warmUp,
  withinLeakSlack,
} from '../../test/kit/churn.js';
import { type ProcessSample, sampleProcess } from '../../test/kit/proc.js';
import { closeBackend, startBackend } from '../../test/kit/proxy-fixture.js';
import { startSingleWorker, type UnhitchProcess } from '../../test/kit/unhitch-process.js';
import { type Flags, positiveFlag } from '../lib/cli-args.js';
import { runBench } from '../lib/harness.js';
import type { ResultsSection } from '../lib/results-file.js';
import { formatCount, formatMarkdownTable } from '../lib/table.js';

const FLAGS = ['connections', 'parallel', 'max-minutes', 'no-write'] as const;
const PROGRESS_INTERVAL_MS = 10_000;
const SETTLE_MAX_MS = 10_000;
const SETTLE_POLL_MS = 250;
const STOP_GRACE_MS = 5_000;
const MiB = 1024 * 1024;

interface ChurnSettings {
  readonly connections: number;
  readonly parallel: number;
  readonly maxMinutes: number;
}

interface ChurnResult {
  readonly counts: ChurnCounts;
  readonly elapsedMs: number;
  readonly before: ProcessSample;
  readonly after: ProcessSample;
  readonly workerRestarted: boolean;
  readonly proxyFailureLines: number;
}

function settingsFrom(flags: Flags): ChurnSettings {
  return {
    connections: Math.round(positiveFlag(flags, 'connections', 100_000)),
    parallel: Math.round(positiveFlag(flags, 'parallel', 24)),
    maxMinutes: positiveFlag(flags, 'max-minutes', 6),
  };
}

const mib = (bytes: number): string => (bytes / MiB).toFixed(1);

/** Polls the worker until fds and RSS are back within slack, or SETTLE_MAX_MS passed. */
async function settledSample(workerPid: number, before: ProcessSample): Promise<ProcessSample> {
  const deadline = Date.now() + SETTLE_MAX_MS;
  let after = sampleProcess(workerPid);
  while (!withinLeakSlack(before, after) && Date.now() < deadline) {
    await sleep(SETTLE_POLL_MS);
    after = sampleProcess(workerPid);
  }
  return after;
}

function progressLine(counts: ChurnCounts, rate: number, workerPid: number): string {
  const done = counts.ok + counts.failed;
  let worker: string;
  try {
    const sample = sampleProcess(workerPid);
    worker = `fds ${sample.fds}, RSS ${mib(sample.rssBytes)} MiB`;
  } catch {
    // The worker is gone; the final report says so.
    worker = 'worker not found';
  }
  return `churn: ${formatCount(done)} done (${counts.failed} failed), ${formatCount(rate)}/s, ${worker}`;
}

async function measure(
  settings: ChurnSettings,
  unhitch: UnhitchProcess,
  port: number,
  workerPid: number,
): Promise<ChurnResult> {
  const warmup = await warmUp(port, settings.parallel);
  console.log(`churn: warm-up ${warmup.ok} connections (${warmup.failed} failed)`);
  await sleep(1_000);
  const before = sampleProcess(workerPid);
  console.log(`churn: baseline fds ${before.fds}, RSS ${mib(before.rssBytes)} MiB`);

  const started = Date.now();
  const endAt = started + settings.maxMinutes * 60_000;
  let starts = 0;
  const counts: ChurnCounts = { ok: 0, failed: 0 };
  let lastDone = 0;
  let lastAt = started;
  const progress = setInterval(() => {
    const now = Date.now();
    const done = counts.ok + counts.failed;
    console.log(progressLine(counts, ((done - lastDone) * 1000) / (now - lastAt), workerPid));
    lastDone = done;
    lastAt = now;
  }, PROGRESS_INTERVAL_MS);
  try {
    await churn(
      port,
      () => starts++ >= settings.connections || Date.now() >= endAt,
      settings.parallel,
      counts,
    );
  } finally {
    clearInterval(progress);
  }
  const elapsedMs = Date.now() - started;
  const workerRestarted =
    unhitch.child.exitCode !== null ||
    unhitch.workerPids().join(',') !== String(workerPid) ||
    unhitch.lines.some((line) => line.msg === 'worker ready' && line.workerPid !== workerPid);
  const after = workerRestarted ? before : await settledSample(workerPid, before);
  return {
    counts,
    elapsedMs,
    before,
    after,
    workerRestarted,
    proxyFailureLines: unhitch.lines.filter((line) => typeof line.reason === 'string').length,
  };
}

function resultTable(result: ChurnResult): string {
  const { counts, elapsedMs, before, after } = result;
  const rate = (counts.ok * 1000) / Math.max(elapsedMs, 1);
  return formatMarkdownTable(
    ['Measure', 'Value'],
    [
      ['Connections ok', formatCount(counts.ok)],
      ['Connections failed', formatCount(counts.failed)],
      ['Elapsed s', (elapsedMs / 1000).toFixed(1)],
      ['Connections/s', formatCount(rate)],
      ['Worker fds before → after', `${before.fds} → ${after.fds}`],
      ['Worker RSS MiB before → after', `${mib(before.rssBytes)} → ${mib(after.rssBytes)}`],
      ['Worker restarted', result.workerRestarted ? 'yes' : 'no'],
      ['Proxy-side failure log lines', formatCount(result.proxyFailureLines)],
    ],
  );
}

/** Why the run failed, one reason per line; empty when it passed. */
function problems(result: ChurnResult): string[] {
  const found: string[] = [];
  if (result.counts.failed > 0) found.push(`${result.counts.failed} connections failed`);
  if (result.workerRestarted) found.push('the worker restarted');
  if (result.proxyFailureLines > 0) {
    found.push(`${result.proxyFailureLines} proxy-side failure log lines`);
  }
  if (result.after.fds > result.before.fds + LEAK_SLACK.fds) {
    found.push(`fds ${result.before.fds} → ${result.after.fds} (slack ${LEAK_SLACK.fds})`);
  }
  if (result.after.rssBytes > result.before.rssBytes + LEAK_SLACK.rssBytes) {
    found.push(
      `RSS grew ${mib(result.after.rssBytes - result.before.rssBytes)} MiB (slack ${mib(LEAK_SLACK.rssBytes)})`,
    );
  }
  return found;
}

function resultsSection(
  settings: ChurnSettings,
  result: ChurnResult,
  table: string,
): Omit<ResultsSection, 'skipped'> {
  const failed = problems(result);
  const done = result.counts.ok + result.counts.failed;
  return {
    heading: '## churn: short TLS connections through 1 worker',
    notes: [
      `- Load: ${settings.parallel} parallel lanes of TLS connect, 'ping' echoed, close; after a ${WARMUP_CONNECTIONS}-connection warm-up. "After" is sampled once fds and RSS are back within slack (${LEAK_SLACK.fds} fds, ${mib(LEAK_SLACK.rssBytes)} MiB) or after ${SETTLE_MAX_MS / 1000} s.`,
      ...(done < settings.connections
        ? [
            `- Stopped by --max-minutes=${settings.maxMinutes} after ${done} of ${settings.connections} connections.`,
          ]
        : []),
    ],
    blocks: [
      table,
      failed.length === 0 ? 'Verdict: no leak.' : `Verdict: FAILED: ${failed.join('; ')}.`,
    ],
  };
}

runBench({
  name: 'churn',
  flags: FLAGS,
  defaultProxies: [],
  run: async (bench) => {
    const settings = settingsFrom(bench.flags);
    const dir = bench.workDirectory;
    let backend: Awaited<ReturnType<typeof startBackend>> | undefined;
    let unhitch: UnhitchProcess | undefined;
    let workerPid: number | undefined;
    const killNow = (): void => {
      // The worker too: after a SIGKILL of the primary nobody else would stop it.
      for (const pid of [unhitch?.child.pid, workerPid]) {
        if (pid === undefined) continue;
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    };
    const onSignal = (signal: NodeJS.Signals): void => {
      process.stderr.write(`\nchurn: ${signal}, stopping unhitch\n`);
      killNow();
      rmSync(dir, { recursive: true, force: true });
      process.exit(130);
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    process.once('exit', killNow);
    try {
      const cert = makeSelfSigned({
        dir,
        stem: 'churn',
        commonName: 'localhost',
        dnsNames: ['localhost'],
      });
      backend = await startBackend((socket) => {
        socket.on('error', () => {});
        socket.pipe(socket);
      });
      const proxy = await startSingleWorker(backend.port, cert.combinedPath);
      unhitch = proxy.unhitch;
      workerPid = proxy.workerPid;
      const { port } = proxy;
      const primaryPid = unhitch.child.pid;
      console.log(
        `churn: ${formatCount(settings.connections)} connections, ${settings.parallel} parallel, at most ${settings.maxMinutes} min; unhitch ${primaryPid}, worker ${workerPid}`,
      );

      const result = await measure(settings, unhitch, port, workerPid);
      const table = resultTable(result);
      const failed = problems(result);
      return {
        stdout: table,
        verdict: failed.length === 0 ? 'churn: no leak' : `churn: FAILED: ${failed.join('; ')}`,
        results: resultsSection(settings, result, table),
        exitStatus: failed.length === 0 ? 0 : 1,
      };
    } finally {
      if (unhitch && unhitch.child.exitCode === null && unhitch.child.signalCode === null) {
        unhitch.kill('SIGTERM');
        const exited = await Promise.race([
          unhitch.exited().then(() => true),
          sleep(STOP_GRACE_MS),
        ]);
        if (!exited) killNow();
      }
      // Stopped: the 'exit' hook must not signal PIDs that may since have been reused.
      unhitch = undefined;
      workerPid = undefined;
      if (backend) closeBackend(backend);
    }
  },
});
