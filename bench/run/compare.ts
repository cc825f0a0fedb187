/**
 * Backend × proxy comparison with wt-load, the rerun of the public Hitch benchmark without
 * Hitch: the proxy is pinned to its own CPU, backend and load generator share the other.
 *
 *   node dist/bench/compare.js [--backends=uws,bittorrent-tracker]
 *     [--proxies=none,unhitch,hitch,haproxy] [--connections=1020] [--duration=15] [--warmup=3]
 *     [--quick] [--backend-cmd="aquatic_ws -c cfg.toml" --backend-port=3000]
 *     [--wt-load-config=bench/wt-load/load.toml] [--proxy-cpu=1] [--load-cpu=0] [--repeat=3] [--no-write]
 * The details table adds per-type rates, wt-load's own CPU and the load that OTHER processes put
 * on the proxy CPU during the window (a shared machine makes results noisy; check that column).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../../test/kit/ports.js';
import { treeCpuMicros, treeRssKiB } from '../../test/kit/proc.js';
import {
  type BackendSpec,
  builtinBackend,
  externalBackend,
  type RunningBackend,
  startBackend,
} from '../lib/backends.js';
import { listFlag, numberFlag } from '../lib/cli-args.js';
import { OtherLoadWindow, parseCpuList } from '../lib/cpu-set.js';
import { type BenchContext, runBench } from '../lib/harness.js';
import { startProcess } from '../lib/processes.js';
import {
  type ProxyName,
  proxyUnavailableReason,
  REPO_ROOT,
  type RunningProxy,
  startProxy,
} from '../lib/proxies.js';
import type { Reliability } from '../lib/reliability.js';
import { barChartsSvg } from '../lib/svg.js';
import {
  cpuPerResponseRatioLine,
  formatMarkdownTable,
  formatResultTable,
  medianRow,
  type ResultRow,
  withRatios,
} from '../lib/table.js';
import type { LoadResult } from '../wt-load/run.js';

const WT_LOAD = join(REPO_ROOT, 'dist', 'bench', 'wt-load', 'main.js');
const KNOWN_FLAGS = [
  'backends',
  'proxies',
  'connections',
  'duration',
  'warmup',
  'quick',
  'backend-cmd',
  'backend-port',
  'wt-load-config',
  'proxy-cpu',
  'load-cpu',
  'no-write',
  'torrents',
  'offers',
  'repeat',
];

interface Settings {
  readonly backends: BackendSpec[];
  readonly proxies: ProxyName[];
  readonly connections: number;
  readonly durationSeconds: number;
  readonly warmupSeconds: number;
  readonly proxyCpu: string;
  readonly loadCpu: string;
  readonly wtLoadExtraArgs: string[];
  /** Runs per backend × proxy; the table shows each metric's median. */
  readonly repeat: number;
}

/** The run's settings: the harness's common flags plus wt-load's and the backends'. */
function settingsFrom(bench: BenchContext): Settings {
  const { flags, quick } = bench;
  const backendCommand = flags.get('backend-cmd');
  const backends = listFlag(
    flags,
    'backends',
    backendCommand ? [] : ['uws', 'bittorrent-tracker'],
  ).map(builtinBackend);
  if (backendCommand) {
    const port = numberFlag(flags, 'backend-port', 0);
    if (!(port > 0)) {
      throw Object.assign(new Error('--backend-cmd needs --backend-port'), {
        code: 'BENCH_BAD_ARGUMENT',
      });
    }
    backends.push(externalBackend(backendCommand, port));
  }
  const extra: string[] = [];
  const wtConfig = flags.get('wt-load-config');
  if (wtConfig) extra.push(`--config=${wtConfig}`);
  for (const name of ['torrents', 'offers']) {
    const value = flags.get(name);
    if (value !== undefined) extra.push(`--${name}=${value}`);
  }
  return {
    backends,
    proxies: bench.proxies,
    connections: numberFlag(flags, 'connections', 1020),
    durationSeconds: numberFlag(flags, 'duration', quick ? 5 : 15),
    warmupSeconds: numberFlag(flags, 'warmup', quick ? 2 : 3),
    proxyCpu: bench.proxyCpu,
    loadCpu: bench.loadCpu,
    wtLoadExtraArgs: extra,
    repeat: bench.repeat,
  };
}

interface Measurement {
  readonly load: LoadResult;
  readonly proxyCpuMicros: number | null;
  readonly proxyRssIdleKiB: number | null;
  readonly proxyRssLoadedKiB: number | null;
  /** Share of the proxy CPU busy with anything but the proxy during the window, %. */
  readonly otherLoadOnProxyCpuPercent: number | null;
}

/** Runs wt-load against `url`, sampling the proxy tree exactly at the window's edges. */
function measure(settings: Settings, url: string, proxy: RunningProxy): Promise<Measurement> {
  const proxyPid = proxy.process?.pid ?? null;
  const rssIdle = proxyPid === null ? null : treeRssKiB(proxyPid);
  let cpuAtStart: number | null = null;
  let cpuAtEnd: number | null = null;
  let rssLoaded: number | null = null;
  const otherLoad = new OtherLoadWindow(parseCpuList(settings.proxyCpu));
  return new Promise((resolve, reject) => {
    let result: LoadResult | null = null;
    const load = startProcess({
      name: 'wt-load',
      command: process.execPath,
      args: [
        WT_LOAD,
        `--url=${url}`,
        `--connections=${settings.connections}`,
        '--num-workers=1',
        '--connection-creation-interval-ms=1',
        `--duration=${settings.durationSeconds}`,
        `--warmup=${settings.warmupSeconds}`,
        '--events',
        ...settings.wtLoadExtraArgs,
      ],
      cpu: settings.loadCpu,
      openFilesLimit: Math.max(settings.connections * 2 + 1024, 4096),
      onStdoutLine: (line) => {
        if (!line.startsWith('{')) return;
        const event = JSON.parse(line) as { event: string; result?: LoadResult };
        if (event.event === 'measure_start') {
          otherLoad.start();
          if (proxyPid !== null) cpuAtStart = treeCpuMicros(proxyPid);
        }
        if (event.event === 'measure_end') otherLoad.end();
        if (event.event === 'measure_end' && proxyPid !== null) {
          cpuAtEnd = treeCpuMicros(proxyPid);
          rssLoaded = treeRssKiB(proxyPid);
        }
        if (event.event === 'result' && event.result) result = event.result;
      },
    });
    load.child.stderr?.on('data', (chunk: Buffer) => {
      const text = chunk.toString();
      if (text.includes('[measuring]') || text.includes('[connecting]')) {
        process.stderr.write(`    ${text.trim().split('\n').pop()}\n`);
      }
    });
    void load.exited.then((status) => {
      if (!result) {
        reject(new Error(`wt-load exited (${status}) without a result: ${load.stderrTail()}`));
        return;
      }
      const proxyCpuMicros =
        cpuAtStart !== null && cpuAtEnd !== null ? cpuAtEnd - cpuAtStart : null;
      resolve({
        load: result,
        proxyCpuMicros,
        proxyRssIdleKiB: rssIdle,
        proxyRssLoadedKiB: rssLoaded,
        otherLoadOnProxyCpuPercent: otherLoad.percent(proxyCpuMicros),
      });
    });
  });
}

function toRow(backend: string, proxy: ProxyName, m: Measurement): ResultRow {
  const responses = m.load.responses;
  const kibPerConnection =
    m.proxyRssIdleKiB !== null && m.proxyRssLoadedKiB !== null && m.load.connectionsOpen > 0
      ? (m.proxyRssLoadedKiB - m.proxyRssIdleKiB) / m.load.connectionsOpen
      : null;
  return {
    backend,
    proxy,
    responsesPerSecond: m.load.responsesPerSecond,
    ratioToNoProxy: null,
    proxyCpuMicrosPerResponse:
      m.proxyCpuMicros !== null && responses > 0 ? m.proxyCpuMicros / responses : null,
    proxyKiBPerConnection: kibPerConnection,
    errors: m.load.errors,
  };
}

async function runOne(
  settings: Settings,
  spec: BackendSpec,
  proxyName: ProxyName,
  pemPath: string,
  workDirectory: string,
): Promise<{ row: ResultRow; measurement: Measurement }> {
  const openFilesLimit = Math.max(settings.connections * 2 + 1024, 4096);
  const backend: RunningBackend = await startBackend(spec, settings.loadCpu, openFilesLimit);
  let proxy: RunningProxy | null = null;
  try {
    proxy = await startProxy(proxyName, {
      frontendPort: await freePort(),
      backendPort: backend.port,
      combinedPemPath: pemPath,
      cpu: settings.proxyCpu,
      workDirectory,
      openFilesLimit,
    });
    await new Promise((r) => setTimeout(r, 500)); // let workers settle before the idle RSS
    const url = `${proxy.tls ? 'wss' : 'ws'}://127.0.0.1:${proxy.port}`;
    const measurement = await measure(settings, url, proxy);
    return { row: toRow(spec.name, proxyName, measurement), measurement };
  } finally {
    await proxy?.process?.stop();
    await backend.process.stop();
  }
}

function detailsTable(
  results: readonly { row: ResultRow; measurement: Measurement }[],
  reliability: Reliability,
): string {
  return formatMarkdownTable(
    [
      'Backend',
      'Proxy',
      'Connections open',
      'Announce/s',
      'Offer/s',
      'Answer/s',
      'wt-load CPU µs/response',
      'wt-load CPU %',
      'Proxy RSS idle → loaded KiB',
      'Proxy CPU busy %',
      'Other load on proxy CPU %',
    ],
    results.map(({ row, measurement: m }) => [
      row.backend,
      row.proxy,
      `${m.load.connectionsOpen}/${m.load.connectionsTarget}`,
      Math.round(m.load.responsesPerSecondByKind.announce).toLocaleString('en-US'),
      Math.round(m.load.responsesPerSecondByKind.offer).toLocaleString('en-US'),
      Math.round(m.load.responsesPerSecondByKind.answer).toLocaleString('en-US'),
      m.load.loadGeneratorCpuMicrosPerResponse?.toFixed(1) ?? '–',
      m.load.loadGeneratorCpuPercent.toFixed(0),
      m.proxyRssIdleKiB === null ? '–' : `${m.proxyRssIdleKiB} → ${m.proxyRssLoadedKiB ?? '?'}`,
      m.proxyCpuMicros === null
        ? '–'
        : ((m.proxyCpuMicros / (m.load.measuredSeconds * 1e6)) * 100).toFixed(0),
      reliability.otherLoadCell(`${row.backend} × ${row.proxy}`, m.otherLoadOnProxyCpuPercent),
    ]),
  );
}

runBench({
  name: 'compare',
  flags: KNOWN_FLAGS,
  defaultProxies: ['none', 'unhitch', 'hitch', 'haproxy'],
  showErrorCode: true,
  run: async (bench) => {
    const settings = settingsFrom(bench);
    const { skipped, workDirectory } = bench;
    const certificate = bench.certificate();
    const proxies = settings.proxies.filter((name) => {
      const reason = proxyUnavailableReason(name);
      if (reason) skipped.push(`${name}: ${reason}`);
      return reason === null;
    });
    for (const note of skipped) process.stderr.write(`skipping ${note}\n`);
    const results: { row: ResultRow; measurement: Measurement }[] = [];
    for (const spec of settings.backends) {
      for (const proxyName of proxies) {
        process.stderr.write(`== ${spec.name} × ${proxyName}\n`);
        try {
          const runs: { row: ResultRow; measurement: Measurement }[] = [];
          for (let run = 0; run < settings.repeat; run++) {
            runs.push(
              await runOne(settings, spec, proxyName, certificate.combinedPemPath, workDirectory),
            );
          }
          // Details come from the run whose throughput is the median one.
          const byThroughput = [...runs].sort(
            (a, b) => a.row.responsesPerSecond - b.row.responsesPerSecond,
          );
          const representative = byThroughput[Math.floor((runs.length - 1) / 2)] ?? runs[0];
          if (representative) {
            results.push({
              row: medianRow(runs.map((r) => r.row)),
              measurement: representative.measurement,
            });
          }
        } catch (err) {
          const message = `${spec.name} × ${proxyName}: ${(err as Error).message}`;
          process.stderr.write(`failed: ${message}\n`);
          skipped.push(message);
        }
      }
    }
    const details = detailsTable(results, bench.reliability);
    // "vs no proxy" and the headline are ratios: none from an unreliable run.
    const measuredRows = results.map((r) => r.row);
    const rows = bench.reliability.unreliable ? measuredRows : withRatios(measuredRows);
    const table = formatResultTable(rows);
    const ratioLine = cpuPerResponseRatioLine(rows);
    const [headline] = bench.reliability.ratioLines(ratioLine === null ? [] : [ratioLine]);
    return {
      stdout: `${table}\n\n${details}${headline ? `\n\n${headline}` : ''}`,
      results: {
        heading: '## compare: backend × proxy under wt-load',
        notes: [
          `- Runs per row: ${settings.repeat} (median of each metric; details from the median-throughput run)`,
          `- Layout: proxy pinned to CPU ${settings.proxyCpu}; backend and wt-load on CPU ${settings.loadCpu}; ${settings.connections} connections, ${settings.warmupSeconds} s warm-up, ${settings.durationSeconds} s measured`,
        ],
        blocks: [
          table,
          ...(headline ? [headline] : []),
          details,
          '![compare chart](results/compare.svg)',
        ],
        references: true,
      },
      writeFiles: (directory) => {
        const path = join(directory, 'compare.svg');
        writeFileSync(path, chartSvg(rows));
        return [path];
      },
    };
  },
});

function chartSvg(rows: readonly ResultRow[]): string {
  return barChartsSvg([
    {
      title: 'Responses/s (higher is better)',
      unit: '/s',
      bars: rows.map((r) => ({
        label: `${r.backend} × ${r.proxy}`,
        value: r.responsesPerSecond,
      })),
    },
    {
      title: 'Proxy CPU per response (lower is better)',
      unit: 'µs',
      bars: rows
        .filter((r) => r.proxyCpuMicrosPerResponse !== null)
        .map((r) => ({
          label: `${r.backend} × ${r.proxy}`,
          value: r.proxyCpuMicrosPerResponse as number,
        })),
    },
  ]);
}
