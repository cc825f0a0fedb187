/**
 * A reconnect storm, per proxy: N clients hold WebSocket connections through the proxy, then
 * all drop at once and all reconnect at once, each resuming with its saved session ticket
 * (`resumed`) or with a full handshake (`full`, first connections); every client upgrades,
 * sends one announce and is back when the tracker's answer arrives. The figure is the
 * proxy's CPU (its whole process tree) from the first reconnect to the last answered
 * announce, divided by N: a fixed amount of work, unlike the rate-based handshake runs whose
 * µs swing with the offered load (node pays per wake-up what a saturated loop amortises).
 *   node dist/bench/reconnect-storm.js [--proxies=unhitch,hitch,haproxy,node-tls,node-tls-bare]
 *     [--connections=1020,4096,max] [--repeat=5] [--clients=1] [--parallel=256] [--warmup=200]
 *     [--timeout=60] [--budget-minutes=20] [--groups=X25519] [--quick]
 *     [--no-write | --update-results | --out=DIR]
 * A round that would end past --budget-minutes is not started (the section says how many ran).
 * `max`: what the proxy's open-files limit allows (two descriptors per proxied connection).
 * The clients drop (not the proxy): every proxy sees the same thing and none needs a way to
 * drop all of its connections (a restart would add its start-up; a backend kill does not
 * reach bare node:tls). The drop is outside the window: the storm starts once the proxy's
 * descriptor count is back to its idle count.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { cpuBusyMicros, processTree } from '../../test/kit/proc.js';
import { builtinBackend, type RunningBackend, startBackend } from '../lib/backends.js';
import { listFlag, numberFlag, positiveFlag } from '../lib/cli-args.js';
import { measureWindow, runBench } from '../lib/harness.js';
import { loadAverage } from '../lib/machine.js';
import {
  DESCRIPTORS_PER_CONNECTION,
  hardOpenFilesLimit,
  maxProxiedConnections,
} from '../lib/open-files.js';
import { type BenchProcess, startProcess, untilReady } from '../lib/processes.js';
import {
  measureInTurns,
  type ProxyName,
  REPO_ROOT,
  type RunningProxy,
  runnableTerminators,
} from '../lib/proxies.js';
import { UNRELIABLE_OTHER_LOAD_PERCENT } from '../lib/reliability.js';
import { formatResultsSection } from '../lib/results-file.js';
import type { ConnectResult, ReconnectMode } from '../lib/storm-client.js';
import { BOTTLENECK_BUSY_PERCENT, bottleneck, rotated, stormSizes } from '../lib/storm-plan.js';
import { formatCount, formatDecimal, formatMarkdownTable, median, ratioTo } from '../lib/table.js';

const CLIENT = join(REPO_ROOT, 'dist', 'bench', 'lib', 'storm-client.js');
/** Descriptors kept back from the proxy's limit for listeners, logs and the runtime. */
const SPARE_FILES = 1024;
/** Full first: its connections leave every client the ticket the resumed storm offers. */
const MODES: readonly ReconnectMode[] = ['full', 'resumed'];
/** The proxy has closed every dropped connection when its descriptors are back to idle + this. */
const SETTLED_SLACK = 16;
const SETTLE_TIMEOUT_MS = 30_000;
const SETTLE_POLL_MS = 50;
/**
 * Reconnects in flight at most, by default. All at once (--parallel=0) from one client
 * process measured the client's own queue and the kernel's SYN retransmit timers instead of
 * the proxy: at 9,488 the accept queues overflowed (somaxconn 4,096, Hitch's backlog 100),
 * dropped SYNs came back after 1, 3, 7… s and a quarter of the clients hit the 60 s timeout,
 * for every proxy. A bounded queue keeps the proxy fed without that, and the work is the same.
 */
const DEFAULT_PARALLEL = 256;

/** One storm: one proxy, one size, one mode, one round. */
export interface StormRun {
  readonly connections: number;
  readonly proxyCpuMicros: number | null;
  readonly wallMs: number;
  readonly back: number;
  readonly resumed: number;
  readonly errors: number;
  readonly errorReasons: Readonly<Record<string, number>>;
  readonly clientCpuMicros: number;
  readonly proxyBusyPercent: number | null;
  readonly loadBusyPercent: number | null;
  readonly otherLoadOnProxyCpuPercent: number | null;
}

/** Open descriptors of the proxy's whole process tree. */
function treeDescriptors(rootPid: number): number {
  let total = 0;
  for (const pid of processTree(rootPid)) {
    try {
      total += readdirSync(`/proc/${pid}/fd`).length;
    } catch {
      // exited meanwhile
    }
  }
  return total;
}

/** Waits until the proxy has closed what the clients dropped; false if it did not in time. */
async function settled(rootPid: number | null, idleDescriptors: number): Promise<boolean> {
  if (rootPid === null) return true;
  const deadline = Date.now() + SETTLE_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (treeDescriptors(rootPid) <= idleDescriptors + SETTLED_SLACK) return true;
    await new Promise((resolve) => setTimeout(resolve, SETTLE_POLL_MS));
  }
  return false;
}

/** The client processes of one proxy turn, driven together: a command goes to all of them. */
class StormClients {
  private readonly waiting = new Map<BenchProcess, (event: Record<string, unknown>) => void>();

  private constructor(
    private readonly processes: BenchProcess[],
    /** A client bounds each command by --timeout; past this it is stuck. */
    private readonly answerWithinMs: number,
  ) {}

  static async start(options: {
    readonly count: number;
    readonly port: number;
    readonly connections: number;
    readonly cpu: string;
    readonly groups: string;
    readonly timeoutSeconds: number;
    readonly parallel: number;
  }): Promise<StormClients> {
    const events = new Map<BenchProcess, (event: Record<string, unknown>) => void>();
    const shares = Array.from(
      { length: options.count },
      (_, index) =>
        Math.floor(((index + 1) * options.connections) / options.count) -
        Math.floor((index * options.connections) / options.count),
    );
    let firstSlot = 0;
    const processes: BenchProcess[] = [];
    const readies: Promise<unknown>[] = [];
    for (const [index, slots] of shares.entries()) {
      let onReady: () => void = () => {};
      const ready = new Promise<void>((resolve) => {
        onReady = resolve;
      });
      const child: BenchProcess = startProcess({
        name: `storm-client ${index + 1}`,
        command: process.execPath,
        args: [
          CLIENT,
          `--port=${options.port}`,
          `--slots=${slots}`,
          `--first-slot=${firstSlot}`,
          `--groups=${options.groups}`,
          `--timeout=${options.timeoutSeconds}`,
          `--parallel=${Math.ceil(options.parallel / options.count)}`,
        ],
        cpu: options.cpu,
        stdinPipe: true,
        onStdoutLine: (line) => {
          if (!line.startsWith('{')) return;
          const event = JSON.parse(line) as Record<string, unknown>;
          if (event.event === 'ready') onReady();
          else events.get(child)?.(event);
        },
      });
      firstSlot += slots;
      processes.push(child);
      readies.push(untilReady(child, ready));
    }
    await Promise.all(readies);
    const clients = new StormClients(processes, options.timeoutSeconds * 1000 + 30_000);
    for (const child of processes) {
      events.set(child, (event) => clients.waiting.get(child)?.(event));
    }
    return clients;
  }

  /**
   * Sends `command` to every client; resolves with each one's answer, or rejects when a
   * client exits or has not answered within the clients' own bound and a margin.
   */
  private command(command: string): Promise<Record<string, unknown>[]> {
    let timer: NodeJS.Timeout | undefined;
    const stuck = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            Object.assign(new Error(`storm client did not answer '${command}' in time`), {
              code: 'BENCH_CLIENT_STUCK',
            }),
          ),
        this.answerWithinMs,
      );
    });
    const answers = Promise.all(
      this.processes.map((child) =>
        untilReady(
          child,
          new Promise<Record<string, unknown>>((resolve) => {
            this.waiting.set(child, (event) => {
              this.waiting.delete(child);
              resolve(event);
            });
            child.child.stdin?.write(`${command}\n`);
          }),
        ),
      ),
    );
    return Promise.race([answers, stuck]).finally(() => clearTimeout(timer));
  }

  /** Every client reconnects its first `count` slots (all by default) at once. */
  async connect(mode: ReconnectMode, count?: number): Promise<ConnectResult> {
    const perClient =
      count === undefined ? '' : ` ${Math.ceil(count / Math.max(1, this.processes.length))}`;
    const answers = await this.command(`connect ${mode}${perClient}`);
    const results = answers.map((answer) => answer.result as ConnectResult);
    const errorReasons: Record<string, number> = {};
    for (const result of results) {
      for (const [reason, n] of Object.entries(result.errorReasons))
        errorReasons[reason] = (errorReasons[reason] ?? 0) + n;
    }
    const sum = (pick: (result: ConnectResult) => number): number =>
      results.reduce((total, result) => total + pick(result), 0);
    return {
      mode,
      attempted: sum((r) => r.attempted),
      back: sum((r) => r.back),
      resumed: sum((r) => r.resumed),
      withoutTicket: sum((r) => r.withoutTicket),
      errors: sum((r) => r.errors),
      errorReasons,
      wallMs: Math.max(...results.map((r) => r.wallMs)),
      clientCpuMicros: sum((r) => r.clientCpuMicros),
    };
  }

  async drop(): Promise<void> {
    await this.command('drop');
  }

  async stop(): Promise<void> {
    for (const child of this.processes) child.child.stdin?.end('exit\n');
    await Promise.all(this.processes.map((child) => child.stop()));
  }
}

function errorsCell(runs: readonly StormRun[]): string {
  const reasons: Record<string, number> = {};
  for (const run of runs) {
    for (const [reason, n] of Object.entries(run.errorReasons))
      reasons[reason] = (reasons[reason] ?? 0) + n;
  }
  const total = runs.reduce((sum, run) => sum + run.errors, 0);
  if (total === 0) return '0';
  const detail = Object.entries(reasons)
    .sort((a, b) => b[1] - a[1])
    .slice(0, 3)
    .map(([reason, n]) => `${reason} ${n}`)
    .join(', ');
  return `${total} (${detail})`;
}

function spread(values: readonly (number | null)[], decimals: number): string {
  const finite = values.filter((v): v is number => v !== null && Number.isFinite(v));
  if (finite.length === 0) return '–';
  return `${formatDecimal(Math.min(...finite), decimals)}–${formatDecimal(Math.max(...finite), decimals)}`;
}

const MODE_TITLE: Record<ReconnectMode, string> = {
  full: 'full handshakes (first connections, no ticket offered)',
  resumed: 'resumed (each client offers its saved session ticket)',
};

runBench({
  name: 'reconnect-storm',
  flags: [
    'proxies',
    'connections',
    'repeat',
    'clients',
    'parallel',
    'warmup',
    'timeout',
    'budget-minutes',
    'groups',
    'quick',
    'no-write',
    'proxy-cpu',
    'load-cpu',
  ],
  defaultProxies: ['unhitch', 'hitch', 'haproxy', 'node-tls', 'node-tls-bare'],
  run: async (bench) => {
    const { flags, quick, proxyCpu, loadCpu, skipped } = bench;
    const startedAt = performance.now();
    const repeat = flags.has('repeat') ? bench.repeat : quick ? 1 : 5;
    const clientCount = Math.floor(positiveFlag(flags, 'clients', 1));
    const parallel = Math.max(0, Math.floor(numberFlag(flags, 'parallel', DEFAULT_PARALLEL)));
    const timeoutSeconds = positiveFlag(flags, 'timeout', 60);
    const groups = flags.get('groups') ?? 'X25519';
    const openFilesLimit = hardOpenFilesLimit();
    const maxConnections = maxProxiedConnections(openFilesLimit, SPARE_FILES);
    const sizes = stormSizes(
      listFlag(flags, 'connections', quick ? ['200'] : ['1020', '4096', 'max']),
      maxConnections,
    );
    const warmup = Math.max(0, Math.floor(numberFlag(flags, 'warmup', quick ? 50 : 200)));
    const loadCpuIndex = /^\d+$/.test(loadCpu) ? Number(loadCpu) : null;
    const maxExplained = `N_max = ${formatCount(maxConnections)}: the proxy's open-files limit is ${formatCount(openFilesLimit)} (this process's hard RLIMIT_NOFILE, which a child cannot exceed without privileges), less ${formatCount(SPARE_FILES)} kept for listeners, logs and the runtime, ÷ ${DESCRIPTORS_PER_CONNECTION} descriptors per proxied connection (client side and backend side)`;
    process.stderr.write(`${maxExplained}\nsizes: ${sizes.map(formatCount).join(', ')}\n`);
    const loadAverageAtStart = loadAverage();
    const certificate = bench.certificate();
    const runnable = runnableTerminators(
      bench.proxies,
      skipped,
      'a reconnect storm needs a TLS proxy',
    );
    const runs = new Map<string, StormRun[]>();
    const key = (name: ProxyName, size: number, mode: ReconnectMode): string =>
      `${name} ${size} ${mode}`;

    const stormOnce = async (
      proxy: RunningProxy,
      clients: StormClients,
      size: number,
      mode: ReconnectMode,
    ): Promise<StormRun> => {
      const pid = proxy.process?.pid ?? null;
      const loadBefore = loadCpuIndex === null ? null : cpuBusyMicros(loadCpuIndex);
      const windowStart = performance.now();
      const measured = await measureWindow(pid, bench.proxyCpus, () => clients.connect(mode));
      const windowMicros = (performance.now() - windowStart) * 1000;
      const loadAfter = loadCpuIndex === null ? null : cpuBusyMicros(loadCpuIndex);
      // Busy counters are sampled a little apart from the window's clock: keep them ≤ 100 %.
      const busy = (micros: number): number => Math.min(100, (micros / windowMicros) * 100);
      const r = measured.result;
      return {
        connections: size,
        proxyCpuMicros: measured.proxyCpuMicros,
        wallMs: r.wallMs,
        back: r.back,
        resumed: r.resumed,
        errors: r.errors,
        errorReasons: r.errorReasons,
        clientCpuMicros: r.clientCpuMicros,
        proxyBusyPercent: measured.proxyCpuMicros === null ? null : busy(measured.proxyCpuMicros),
        loadBusyPercent:
          loadBefore === null || loadAfter === null ? null : busy(loadAfter - loadBefore),
        otherLoadOnProxyCpuPercent: measured.otherLoadOnProxyCpuPercent,
      };
    };

    const turn = async (proxy: RunningProxy, size: number): Promise<void> => {
      const pid = proxy.process?.pid ?? null;
      const idleDescriptors = pid === null ? 0 : treeDescriptors(pid);
      const clients = await StormClients.start({
        count: clientCount,
        port: proxy.port,
        connections: size,
        cpu: loadCpu,
        groups,
        timeoutSeconds,
        parallel,
      });
      const dropAndSettle = async (): Promise<void> => {
        await clients.drop();
        if (!(await settled(pid, idleDescriptors))) {
          throw Object.assign(
            new Error(
              `still ${treeDescriptors(pid ?? 0)} descriptors open ${SETTLE_TIMEOUT_MS / 1000} s after the drop (idle: ${idleDescriptors})`,
            ),
            { code: 'BENCH_NOT_SETTLED' },
          );
        }
      };
      try {
        // Warm-up: both paths once, so the storm does not measure a cold JIT.
        if (warmup > 0) {
          await clients.connect('full', Math.min(warmup, size));
          await dropAndSettle();
          await clients.connect('resumed', Math.min(warmup, size));
          await dropAndSettle();
        }
        for (const mode of MODES) {
          const run = await stormOnce(proxy, clients, size, mode);
          const list = runs.get(key(proxy.name, size, mode)) ?? [];
          list.push(run);
          runs.set(key(proxy.name, size, mode), list);
          process.stderr.write(
            `   ${proxy.name} | ${formatCount(size)} | ${mode} | ${formatDecimal(run.proxyCpuMicros === null ? null : run.proxyCpuMicros / size)} µs/reconnect | ${formatDecimal(run.wallMs / 1000, 2)} s | back ${run.back} | resumed ${run.resumed} | errors ${run.errors} | proxy busy ${formatDecimal(run.proxyBusyPercent, 0)} % | load CPU ${formatDecimal(run.loadBusyPercent, 0)} %\n`,
          );
          await dropAndSettle();
        }
      } finally {
        await clients.stop();
      }
    };

    const needsBackend = runnable.some((name) => name !== 'node-tls-bare');
    const budgetMs = positiveFlag(flags, 'budget-minutes', 20) * 60_000;
    let rounds = 0;
    for (let round = 0; round < repeat; round++) {
      // A slow or loaded machine runs fewer rounds rather than past the budget (said below).
      const elapsedMs = performance.now() - startedAt;
      if (round > 0 && elapsedMs + elapsedMs / round > budgetMs) {
        process.stderr.write(
          `reconnect-storm: stopping after ${round} round(s): another would end past the budget\n`,
        );
        break;
      }
      rounds++;
      for (const size of sizes) {
        process.stderr.write(`-- round ${round + 1}/${repeat}, ${formatCount(size)} connections\n`);
        // A fresh tracker per round and size: no swarm or TIME_WAIT carried from the last.
        let backend: RunningBackend | null = null;
        try {
          backend = needsBackend
            ? await startBackend(builtinBackend('uws'), loadCpu, openFilesLimit)
            : null;
          await measureInTurns({
            proxies: rotated(runnable, round),
            repeat: 1,
            start: {
              backendPort: backend?.port ?? 1,
              combinedPemPath: certificate.combinedPemPath,
              cpu: proxyCpu,
              workDirectory: bench.workDirectory,
              openFilesLimit,
            },
            skipped,
            measure: (proxy) => turn(proxy, size),
          });
        } finally {
          await backend?.process.stop();
        }
      }
    }

    const cpuPerReconnect = (run: StormRun): number | null =>
      run.proxyCpuMicros === null ? null : run.proxyCpuMicros / run.connections;
    const tables: string[] = [];
    for (const size of sizes) {
      for (const mode of MODES) {
        const rows: string[][] = [];
        for (const name of runnable) {
          const list = runs.get(key(name, size, mode)) ?? [];
          if (list.length === 0) continue;
          const back = list.reduce((sum, run) => sum + run.back, 0);
          const resumed = list.reduce((sum, run) => sum + run.resumed, 0);
          const proxyBusy = median(list.map((run) => run.proxyBusyPercent));
          const loadBusy = median(list.map((run) => run.loadBusyPercent));
          rows.push([
            formatCount(size),
            mode,
            name,
            formatDecimal(median(list.map(cpuPerReconnect)), 0),
            spread(list.map(cpuPerReconnect), 0),
            formatDecimal((median(list.map((run) => run.wallMs)) ?? 0) / 1000, 2),
            spread(
              list.map((run) => run.wallMs / 1000),
              2,
            ),
            `${formatDecimal(back > 0 ? (resumed / back) * 100 : null, 1)} %`,
            `${formatCount(Math.min(...list.map((run) => run.back)))} / ${formatCount(size)}`,
            errorsCell(list),
            formatDecimal(median(list.map((run) => run.clientCpuMicros / run.connections)), 0),
            formatDecimal(proxyBusy, 0),
            formatDecimal(loadBusy, 0),
            bottleneck(proxyBusy, loadBusy),
            bench.reliability.otherLoadCell(
              `${name} ${formatCount(size)} ${mode}`,
              Math.max(...list.map((run) => run.otherLoadOnProxyCpuPercent ?? 0)),
            ),
          ]);
        }
        if (rows.length === 0) continue;
        tables.push(
          `### ${formatCount(size)} connections, ${MODE_TITLE[mode]}`,
          formatMarkdownTable(
            [
              'Connections',
              'Reconnect',
              'Proxy',
              'Proxy CPU µs/reconnect',
              'Min–max µs',
              'Wall s',
              'Min–max s',
              'Resumed',
              'Back / N (worst run)',
              'Errors (all runs)',
              'Client CPU µs/reconnect',
              'Proxy CPU busy %',
              'Load CPU busy %',
              'Bottleneck',
              'Other load on proxy CPU % (max)',
            ],
            rows,
          ),
        );
      }
    }
    const largest = sizes.at(-1) ?? 0;
    bench.reliability.ratiosFromReliableRows = true;
    // A ratio line comes from the two rows it divides (unhitch and Hitch at the largest N):
    // written when both are reliable, whatever a smaller storm's row says.
    const ratioLines = (['resumed', 'full'] as const).flatMap((mode) => {
      const at = (name: ProxyName): number | null =>
        median((runs.get(key(name, largest, mode)) ?? []).map(cpuPerReconnect));
      const rowLabel = (name: ProxyName): string => `${name} ${formatCount(largest)} ${mode}`;
      if (!bench.reliability.reliableRows(rowLabel('unhitch'), rowLabel('hitch'))) return [];
      const unhitch = at('unhitch');
      const ratio = unhitch === null ? null : ratioTo(unhitch, at('hitch'));
      return ratio === null
        ? []
        : [`ratio unhitch/hitch cpu-per-${mode}-reconnect: ${ratio.toFixed(2)}`];
    });
    const elapsedSeconds = (performance.now() - startedAt) / 1000;
    process.stderr.write(`reconnect-storm: ${formatDecimal(elapsedSeconds, 0)} s in all\n`);
    const noiseNote = bench.reliability.unreliable
      ? []
      : [
          `- Other processes took at most ${UNRELIABLE_OTHER_LOAD_PERCENT} % of the proxy CPU in every storm.`,
        ];
    const unreliable = bench.reliability.summary();
    const notes = [
      `- Layout: proxy on CPU ${proxyCpu}; ${clientCount} storm client process(es) (raw TLS + WebSocket, one socket per client, shared TLS context) and the uws tracker stand-in on CPU ${loadCpu}; bare node:tls answers the announce itself. Key exchange offered: ${groups} (what Hitch and HAProxy on OpenSSL 3.0 choose anyway).`,
      `- Sizes: ${sizes.map(formatCount).join(', ')} connections. ${maxExplained}.`,
      `- Each turn: a fresh proxy; warm-up (${warmup} clients connect with a full handshake, drop, reconnect resumed, drop); then the full storm (no client offers a ticket), all drop, then the resumed storm (each offers the ticket its last connection got). Before each storm the clients drop at once (they close; the proxy does not drop them: that is the same for every proxy, and none needs a way to drop all its connections) and the storm starts once the proxy's descriptors are back to idle.`,
      `- A client is back when its announce is answered: TCP connect, TLS 1.3 handshake, WebSocket upgrade, one announce and its answer. ${parallel > 0 ? `All reconnect at once through a queue of at most ${parallel} in flight (from one client process, an uncapped storm measures the client's queue and SYN retransmits: --parallel=0). Each proxy keeps its default listen backlog (Hitch and unhitch 100, HAProxy its maxconn, node 511): a burst above it that the proxy does not accept fast enough loses SYNs, which come back 1 s later and show in the wall time.` : 'All reconnect at once (no cap: --parallel=0).'} Proxy CPU: user+system of the proxy's process tree from the first reconnect to the last answered announce, ÷ N. Resumed: share of the clients back whose handshake isSessionReused() confirmed. A client not back within ${timeoutSeconds} s of the storm's start is an error.`,
      `- Bottleneck: the proxy when its CPU was busy ≥ ${BOTTLENECK_BUSY_PERCENT} % of the storm; the client side when the load CPU (clients and tracker) was; neither: both waited (the SYN backlog, retransmits). µs per reconnect is a fixed amount of work either way.`,
      `- ${rounds} round(s)${rounds < repeat ? ` of the ${repeat} asked: another would have ended past the ${budgetMs / 60_000} min budget (--budget-minutes)` : ''}, the proxies taking turns in an order rotated each round; median shown, with min–max over the rounds.`,
      `- Machine load average (1/5/15 min) at start: ${loadAverageAtStart}; at end: ${loadAverage()}. Whole run: ${formatDecimal(elapsedSeconds, 0)} s.`,
      ...noiseNote,
      ...(unreliable === null ? [] : [`- ${unreliable}`]),
    ];
    // The section ends with the ratio lines (readers and the lead's checks look there).
    const section = [
      formatResultsSection({
        heading: '## reconnect-storm: proxy CPU per reconnect when every client reconnects at once',
        notes,
        blocks: tables,
        skipped,
      }).trimEnd(),
      ...(ratioLines.length > 0 ? ['', ...ratioLines] : []),
    ].join('\n');
    return {
      stdout: [
        maxExplained,
        `Rounds: ${rounds} of ${repeat}.`,
        '',
        ...tables.flatMap((block) => [block, '']),
        ...ratioLines,
      ]
        .join('\n')
        .trimEnd(),
      results: section,
    };
  },
});
