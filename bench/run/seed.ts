/**
 * The seed benchmark's tables at scale: responses/s through each proxy by connections (1,020,
 * 4,096 and as many as the open-files limit allows) and by proxy workers, for
 * bittorrent-tracker and any tracker given with --backend-cmd (wt-tracker, aquatic_ws). Each
 * row says how fast the connections were opened (the ramp) and every error seen: connections
 * the load generator lost or was refused (before and during the window) and the proxy's own
 * log lines about its backend (timeouts, refusals, resets).
 *   node dist/bench/seed.js [--backends=bittorrent-tracker] [--backend-cmd="wt-tracker …" --backend-port=N]
 *     [--proxies=unhitch,hitch] [--connections=1020,4096,max] [--workers=1,2]
 *     [--ramp-interval-ms=0] [--duration=10] [--warmup=2] [--max-connect-seconds=60] [--quick] [--no-write]
 *     [--backend-backlog=N] [--backend-stall=MS/EVERY_MS] [--backend-connect-timeout=SECS]
 * The last three make backend timeouts likely: a short listen backlog and an event loop that
 * stalls (a tracker that accepts slowly) drop SYNs, so the proxy's connect waits for the
 * kernel's retransmission (1 s, then 3 s, …) — past a short backend-connect-timeout (unhitch's
 * flag, HAProxy's `timeout connect`; the installed Hitch 1.7.2 rejects both the flag and the
 * config key, so it keeps its built-in timeout, which it logs as "backend connect timeout").
 * --ramp-interval-ms=0 opens every connection at once (the fastest ramp this client makes);
 * larger values pace them. One worker runs on --proxy-cpu; more run on every CPU (--multi-cpu).
 */
import { join } from 'node:path';
import { freePort } from '../../test/kit/ports.js';
import {
  type BackendSpec,
  builtinBackend,
  externalBackend,
  type RunningBackend,
  startBackend,
} from '../lib/backends.js';
import { listFlag, numberFlag } from '../lib/cli-args.js';
import { runBench } from '../lib/harness.js';
import { loadAverage } from '../lib/machine.js';
import { runMeasuredChild } from '../lib/measured-child.js';
import { hardOpenFilesLimit, maxProxiedConnections } from '../lib/open-files.js';
import { isShuttingDown } from '../lib/processes.js';
import {
  proxyUnavailableReason,
  REPO_ROOT,
  type RunningProxy,
  startProxy,
} from '../lib/proxies.js';
import { formatCount, formatDecimal, formatMarkdownTable } from '../lib/table.js';
import type { LoadResult } from '../wt-load/run.js';

const WT_LOAD = join(REPO_ROOT, 'dist', 'bench', 'wt-load', 'main.js');
/** A proxy log line about its backend failing. */
const BACKEND_ERROR = /backend/i;
const BACKEND_ERROR_KIND = /time|refus|reset|error|fail|unreach/i;

/** Descriptors kept back from the limit for everything but the connections. */
const SPARE_FILES = 512;

/**
 * unhitch logs JSON with a stable `reason` (backend_connect_timeout, backend_refused, …): only
 * backend_* reasons count — a client_reset at the end of a run mentions the backend too.
 * Hitch and HAProxy log plain text: a line naming the backend with a failure word.
 */
function isBackendError(line: string): boolean {
  if (line.startsWith('{')) {
    try {
      const reason = (JSON.parse(line) as { reason?: unknown }).reason;
      return typeof reason === 'string' && reason.startsWith('backend');
    } catch {
      return false;
    }
  }
  return BACKEND_ERROR.test(line) && BACKEND_ERROR_KIND.test(line);
}

/** Counts the proxy's log lines (stdout and stderr) about backend errors, keeping one example. */
function watchBackendErrors(proxy: RunningProxy): { count: () => number; example: () => string } {
  let count = 0;
  let example = '';
  for (const stream of [proxy.process?.child.stdout, proxy.process?.child.stderr]) {
    let pending = '';
    stream?.on('data', (chunk: Buffer | string) => {
      pending += chunk.toString();
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        if (isBackendError(line)) {
          count++;
          if (example === '') example = line.slice(0, 160).replaceAll('|', '/');
        }
      }
    });
  }
  return { count: () => count, example: () => example };
}

runBench({
  name: 'seed',
  flags: [
    'backends',
    'backend-cmd',
    'backend-port',
    'proxies',
    'connections',
    'workers',
    'ramp-interval-ms',
    'duration',
    'warmup',
    'max-connect-seconds',
    'multi-cpu',
    'backend-backlog',
    'backend-stall',
    'backend-connect-timeout',
    'quick',
    'no-write',
    'proxy-cpu',
    'load-cpu',
  ],
  defaultProxies: ['unhitch', 'hitch'],
  run: async (bench) => {
    const { flags, quick, proxyCpu, loadCpu, skipped } = bench;
    const duration = numberFlag(flags, 'duration', quick ? 3 : 10);
    const warmup = numberFlag(flags, 'warmup', quick ? 1 : 2);
    const rampIntervalMs = numberFlag(flags, 'ramp-interval-ms', 0);
    const maxConnectSeconds = numberFlag(flags, 'max-connect-seconds', quick ? 20 : 60);
    const multiCpu = flags.get('multi-cpu') ?? '0-1';
    const hardLimit = hardOpenFilesLimit();
    // The proxy holds two descriptors per connection (client and backend side).
    const maxConnections = maxProxiedConnections(hardLimit, SPARE_FILES);
    const connectionCounts = listFlag(
      flags,
      'connections',
      quick ? ['100'] : ['1020', '4096', 'max'],
    ).map((text) => (text === 'max' ? maxConnections : Math.min(Number(text), maxConnections)));
    const workerCounts = listFlag(flags, 'workers', quick ? ['1'] : ['1', '2']).map(Number);
    const backendCommand = flags.get('backend-cmd');
    const backlog = flags.get('backend-backlog');
    const stall = flags.get('backend-stall');
    const connectTimeout = flags.get('backend-connect-timeout');
    // Provoking backend timeouts is its own RESULTS.md section, beside the plain scale run.
    const provoking = backlog !== undefined || stall !== undefined || connectTimeout !== undefined;
    const backends: BackendSpec[] = listFlag(
      flags,
      'backends',
      backendCommand ? [] : ['bittorrent-tracker'],
    ).map((name) => {
      const spec = builtinBackend(name);
      if (name !== 'bittorrent-tracker' || (backlog === undefined && stall === undefined))
        return spec;
      return { ...spec, extraArgs: [backlog ?? '511', ...(stall ? [stall] : [])] };
    });
    if (backendCommand)
      backends.push(externalBackend(backendCommand, numberFlag(flags, 'backend-port', 0)));
    const runnable = bench.proxies.filter((name) => {
      const reason = proxyUnavailableReason(name);
      if (reason) skipped.push(`${name}: ${reason}`);
      return reason === null;
    });
    const certificate = bench.certificate();
    const openFilesLimit = hardLimit;
    const rows: string[][] = [];
    const loadAverageAtStart = loadAverage();
    for (const spec of backends) {
      for (const workers of workerCounts) {
        for (const connections of connectionCounts) {
          for (const name of runnable) {
            if (isShuttingDown()) break;
            process.stderr.write(
              `== ${spec.name} × ${name} × ${workers} worker(s) × ${connections} connections\n`,
            );
            let backend: RunningBackend | null = null;
            let proxy: RunningProxy | null = null;
            try {
              // A fresh backend per row: peers left from the previous row would change its work.
              backend = await startBackend(spec, loadCpu, openFilesLimit);
              proxy = await startProxy(name, {
                frontendPort: await freePort(),
                backendPort: backend.port,
                combinedPemPath: certificate.combinedPemPath,
                cpu: workers > 1 ? multiCpu : proxyCpu,
                workDirectory: bench.workDirectory,
                openFilesLimit,
                workers,
                verbose: true,
                connectTimeoutSeconds:
                  connectTimeout === undefined ? undefined : Number(connectTimeout),
              });
              const backendErrors = watchBackendErrors(proxy);
              const measured = await runMeasuredChild<LoadResult>({
                name: 'wt-load',
                command: process.execPath,
                args: [
                  WT_LOAD,
                  `--url=${proxy.tls ? 'wss' : 'ws'}://127.0.0.1:${proxy.port}`,
                  `--connections=${connections}`,
                  '--num-workers=1',
                  `--connection-creation-interval-ms=${rampIntervalMs}`,
                  `--max-connect-seconds=${maxConnectSeconds}`,
                  `--duration=${duration}`,
                  `--warmup=${warmup}`,
                  '--events',
                ],
                cpu: loadCpu,
                openFilesLimit,
                proxyPid: proxy.process?.pid ?? null,
                // Several workers share every CPU with the load: no "other load" figure then.
                proxyCpus: workers === 1 ? bench.proxyCpus : null,
              });
              const r = measured.result;
              const other = measured.otherLoadOnProxyCpuPercent;
              rows.push([
                spec.name,
                name,
                String(workers),
                `${formatCount(r.connectionsOpen)} / ${formatCount(r.connectionsTarget)}`,
                formatCount(r.connectSeconds > 0 ? r.connectionsOpen / r.connectSeconds : 0),
                formatCount(r.responsesPerSecond),
                formatDecimal(
                  measured.proxyCpuMicros !== null && r.responses > 0
                    ? measured.proxyCpuMicros / r.responses
                    : null,
                ),
                String(r.connectionErrorsBeforeWindow),
                String(r.connectionErrors),
                String(r.errors - r.connectionErrors),
                String(backendErrors.count()),
                backendErrors.example() || '–',
                bench.reliability.otherLoadCell(
                  `${spec.name} × ${name} × ${workers} × ${connections}`,
                  other,
                ),
              ]);
              process.stderr.write(`   ${rows.at(-1)?.join(' | ')}\n`);
            } catch (err) {
              const message = `${spec.name} × ${name} × ${workers} × ${connections}: ${(err as Error).message}`;
              skipped.push(message);
              process.stderr.write(`failed: ${message}\n`);
            } finally {
              await proxy?.process?.stop();
              await backend?.process.stop();
            }
          }
        }
      }
    }
    const table = formatMarkdownTable(
      [
        'Backend',
        'Proxy',
        'Workers',
        'Connections open / target',
        'Ramp connections/s',
        'Responses/s',
        'Proxy CPU µs/response',
        'Connections lost before window',
        'Connections lost in window',
        'Failure replies',
        'Proxy backend-error log lines',
        'First such line',
        'Other load on proxy CPU %',
      ],
      rows,
    );
    return {
      stdout: table,
      results: {
        heading: provoking
          ? '## seed-backend-timeouts: the seed run where backends accept slowly, every error per proxy'
          : '## seed: responses/s by connections and proxy workers, ramp and every error',
        notes: [
          `- Layout: one proxy worker on CPU ${proxyCpu}, more on CPUs ${multiCpu}; backend and wt-load on CPU ${loadCpu}; open-files limit ${hardLimit} for every process, so at most ${formatCount(maxConnections)} connections (the proxy holds two descriptors per connection). A fresh backend per row; ${warmup} s warm-up, ${duration} s measured once all connections are open (or after ${maxConnectSeconds} s).`,
          `- Backend: ${backlog === undefined ? "node's default listen backlog (511)" : `listen backlog ${backlog}`}${stall ? `, event loop stalled ${stall.replace('/', ' ms every ')} ms (slow accept)` : ''}; backend connect timeout ${connectTimeout === undefined ? "each proxy's default (unhitch 30 s, HAProxy 5 s here)" : `${connectTimeout} s for unhitch and HAProxy`}; the installed Hitch 1.7.2 rejects the setting (flag and config key) and keeps its built-in timeout.`,
          `- Machine load average (1/5/15 min) at start: ${loadAverageAtStart}; at end: ${loadAverage()}.`,
          `- Ramp: connections opened ${rampIntervalMs === 0 ? 'all at once' : `one every ${rampIntervalMs} ms`}; "Ramp connections/s" is connections open divided by the time until they all were. Errors: connections the load generator saw closed or refused (it reopens them), failure replies from the tracker, and the proxy's log lines that mention its backend with a timeout, refusal, reset or failure (proxies run without --quiet).`,
        ],
        blocks: [
          ...(provoking
            ? [
                'A backend that accepts slowly (short listen backlog, stalling event loop) drops SYNs; a proxy connect then waits for the kernel to retransmit (1 s, 3 s, …). A proxy with a backend connect timeout shorter than that closes the client (counted as lost connections and backend-error log lines); one with a longer timeout (Hitch 1.7.2, whose timeout cannot be set) keeps the client waiting, which shows as fewer connections open.',
              ]
            : []),
          table,
        ],
      },
      section: provoking ? 'seed-backend-timeouts' : 'seed',
    };
  },
});
