/**
 * wt-load's main thread: starts the workers, waits for the connections, runs the warm-up and
 * the measured window, and returns what was measured (including its own CPU per response, to
 * show it is not the bottleneck).
 */
import { Worker } from 'node:worker_threads';
import { type LoadConfig, targetUrl } from './config.js';
import { RESPONSE_KINDS, type ResponseKind } from './protocol.js';
import {
  addCounters,
  type Counters,
  cloneCounters,
  emptyCounters,
  subtractCounters,
  totalResponses,
  type WorkerReport,
} from './stats.js';
import type { WorkerInput } from './worker.js';

export interface LoadResult {
  readonly url: string;
  readonly connectionsTarget: number;
  readonly connectionsOpen: number;
  readonly measuredSeconds: number;
  readonly responsesPerSecond: number;
  readonly responsesPerSecondByKind: Record<ResponseKind, number>;
  readonly requestsPerSecond: number;
  readonly responses: number;
  /** 'failure reason' replies plus connections closed or refused during the window. */
  readonly errors: number;
  readonly connectionErrors: number;
  /** wt-load's own user+system CPU per response in the window, all threads. */
  readonly loadGeneratorCpuMicrosPerResponse: number | null;
  readonly loadGeneratorCpuPercent: number;
  /** Seconds from the first connection attempt until all were open (or the wait gave up). */
  readonly connectSeconds: number;
  /** announce_rate (0: closed loop). */
  readonly announceRateOffered: number;
  /** Open-loop announces due in the window but not sent (the loop fell behind, or nothing was open). */
  readonly announcesMissed: number;
  /** Connections closed or refused before the measured window (while connecting, warm-up). */
  readonly connectionErrorsBeforeWindow: number;
}

export type LoadEvent =
  | { readonly event: 'connected'; readonly connections: number; readonly seconds: number }
  | { readonly event: 'measure_start' }
  | { readonly event: 'measure_end' }
  | { readonly event: 'progress'; readonly line: string; readonly phase: Phase };

type Phase = 'connecting' | 'warmup' | 'measuring';

export interface LoadHooks {
  /** Called synchronously at phase changes: compare.ts samples the proxy's CPU here. */
  readonly onEvent?: (event: LoadEvent) => void;
}

const WORKER_SCRIPT = new URL('./worker.js', import.meta.url);

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function perSecond(count: number, seconds: number): number {
  return seconds > 0 ? count / seconds : 0;
}

export async function runLoad(config: LoadConfig, hooks: LoadHooks = {}): Promise<LoadResult> {
  const emit = hooks.onEvent ?? (() => {});
  const totals: Counters = emptyCounters();
  const openByWorker = new Map<number, number>();
  const connectionsTarget = config.num_workers * config.num_connections_per_worker;
  const workers: Worker[] = [];
  const stopped: Promise<void>[] = [];

  for (let workerIndex = 0; workerIndex < config.num_workers; workerIndex++) {
    const input: WorkerInput = { config, workerIndex };
    const worker = new Worker(WORKER_SCRIPT, { workerData: input });
    workers.push(worker);
    stopped.push(
      new Promise<void>((resolve) => {
        worker.on('message', (report: WorkerReport) => {
          addCounters(totals, report.delta);
          if (report.type === 'stats') openByWorker.set(workerIndex, report.openConnections);
          else resolve();
        });
        worker.once('exit', () => resolve());
        worker.once('error', (err) => {
          process.stderr.write(`wt-load worker ${workerIndex}: ${err.message}\n`);
          resolve();
        });
      }),
    );
  }
  const openConnections = (): number => [...openByWorker.values()].reduce((a, b) => a + b, 0);

  let phase: Phase = 'connecting';
  let last = cloneCounters(totals);
  let lastAt = performance.now();
  const progress = setInterval(() => {
    const now = performance.now();
    const delta = subtractCounters(totals, last);
    const seconds = (now - lastAt) / 1000;
    last = cloneCounters(totals);
    lastAt = now;
    const byKind = RESPONSE_KINDS.filter((k) => delta.responses[k] > 0)
      .map((k) => `${k} ${Math.round(perSecond(delta.responses[k], seconds))}`)
      .join(', ');
    const line = `[${phase}] connections ${openConnections()}/${connectionsTarget}; requests out ${Math.round(
      perSecond(delta.requestsSent, seconds),
    )}/s; responses in ${Math.round(perSecond(totalResponses(delta), seconds))}/s (${byKind || 'none'}); connection errors ${totals.connectionErrors}`;
    emit({ event: 'progress', line, phase });
  }, 1000);

  try {
    const connectStart = performance.now();
    if (config.measure_after_max_connections_reached) {
      const deadline = connectStart + config.max_connect_seconds * 1000;
      while (openConnections() < connectionsTarget && performance.now() < deadline) {
        await sleep(50);
      }
    }
    const connectSeconds = (performance.now() - connectStart) / 1000;
    emit({ event: 'connected', connections: openConnections(), seconds: connectSeconds });
    for (const worker of workers) worker.postMessage('start');
    phase = 'warmup';
    await sleep(config.warmup * 1000);

    phase = 'measuring';
    emit({ event: 'measure_start' });
    const startCounters = cloneCounters(totals);
    const startCpu = process.cpuUsage();
    const startAt = performance.now();
    await sleep(config.duration * 1000);
    const endCounters = cloneCounters(totals);
    const cpu = process.cpuUsage(startCpu);
    const measuredSeconds = (performance.now() - startAt) / 1000;
    const connectionsOpen = openConnections();
    emit({ event: 'measure_end' });

    const window = subtractCounters(endCounters, startCounters);
    const responses = totalResponses(window);
    const byKind = {} as Record<ResponseKind, number>;
    for (const kind of RESPONSE_KINDS)
      byKind[kind] = perSecond(window.responses[kind], measuredSeconds);
    const cpuMicros = cpu.user + cpu.system;
    return {
      url: targetUrl(config),
      connectionsTarget,
      connectionsOpen,
      measuredSeconds,
      responsesPerSecond: perSecond(responses, measuredSeconds),
      responsesPerSecondByKind: byKind,
      requestsPerSecond: perSecond(window.requestsSent, measuredSeconds),
      responses,
      errors: window.responses.error + window.connectionErrors,
      connectionErrors: window.connectionErrors,
      loadGeneratorCpuMicrosPerResponse: responses > 0 ? cpuMicros / responses : null,
      loadGeneratorCpuPercent: (cpuMicros / (measuredSeconds * 1e6)) * 100,
      connectSeconds,
      announceRateOffered: config.announce_rate,
      announcesMissed: window.announcesMissed,
      connectionErrorsBeforeWindow: startCounters.connectionErrors,
    };
  } finally {
    clearInterval(progress);
    for (const worker of workers) worker.postMessage('stop');
    await Promise.race([Promise.all(stopped), sleep(5000)]);
    await Promise.all(workers.map((worker) => worker.terminate()));
  }
}

/** The human-readable summary table wt-load prints at the end. */
export function formatLoadResult(result: LoadResult): string {
  const rows: [string, string][] = [
    ['URL', result.url],
    ['Connections open / target', `${result.connectionsOpen} / ${result.connectionsTarget}`],
    ['Measured seconds', result.measuredSeconds.toFixed(1)],
    ['Requests/s', Math.round(result.requestsPerSecond).toLocaleString('en-US')],
    ['Responses/s (total)', Math.round(result.responsesPerSecond).toLocaleString('en-US')],
    ...RESPONSE_KINDS.map((kind): [string, string] => [
      `  ${kind}`,
      Math.round(result.responsesPerSecondByKind[kind]).toLocaleString('en-US'),
    ]),
    ['Errors (failure replies + connection errors)', String(result.errors)],
    [
      'wt-load CPU µs/response',
      result.loadGeneratorCpuMicrosPerResponse === null
        ? '–'
        : result.loadGeneratorCpuMicrosPerResponse.toFixed(1),
    ],
    ['wt-load CPU %', result.loadGeneratorCpuPercent.toFixed(0)],
    ['Seconds to open every connection', result.connectSeconds.toFixed(1)],
    ...(result.announceRateOffered > 0
      ? [
          ['Announces/s offered (open loop)', String(result.announceRateOffered)] as [
            string,
            string,
          ],
          ['Announces due but not sent', String(result.announcesMissed)] as [string, string],
        ]
      : []),
  ];
  return ['| Metric | Value |', '| --- | --- |', ...rows.map(([k, v]) => `| ${k} | ${v} |`)].join(
    '\n',
  );
}
