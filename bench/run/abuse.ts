/**
 * Abuse: a legitimate population of tracker clients (bench/lib/abuse-legit.ts: handshake,
 * WebSocket upgrade, one announce, close, at a fixed rate, each client from its own 127.0.1.x
 * address) beside one attacker from 127.0.0.2 (bench/lib/abuse-attacker.ts), one attack at a
 * time, each bounded in connections and time, and an attack-free baseline. Per attack × proxy:
 * the legitimate success rate, handshake p50/p99, the proxy's peak RSS and CPU, and the bytes
 * it logged during the attack; PASS when every legitimate session succeeded and the handshake
 * p99 stayed within 2× the same proxy's attack-free run.
 *   node dist/bench/abuse.js [--proxies=unhitch-limits,unhitch,hitch,haproxy]
 *     [--attacks=baseline,idle,slow-hello,plaintext,handshake,slowloris-pre,slowloris-post]
 *     [--duration=8] [--warmup=1] [--clients=16] [--rate=80] [--sockets=4000]
 *     [--slow-sockets=400] [--lanes=48] [--tickle-ms=2000] [--limits="--flag=value …"]
 *     [--quick] [--no-write | --update-results]
 * Each row starts the proxy afresh (a ban or a held socket of one attack must not carry into
 * the next). The attacker runs on the load CPU at nice 19, so the legitimate clients and the
 * backend there keep their CPU when a flood wants all of it; the proxy has its own CPU.
 */
import { join } from 'node:path';
import { freePort } from '../../test/kit/ports.js';
import { treeCpuMicros, treeRssKiB } from '../../test/kit/proc.js';
import {
  ABUSE_TABLE_HEADER,
  type AttackerResult,
  type AttackKind,
  type LegitResult,
  P99_TARGET_FACTOR,
  ROW_LABELS,
  ROWS,
  type RowKind,
  verdict,
} from '../lib/abuse-kinds.js';
import { builtinBackend, type RunningBackend, startBackend } from '../lib/backends.js';
import { type Flags, listFlag, numberFlag, positiveFlag } from '../lib/cli-args.js';
import { type BenchContext, runBench } from '../lib/harness.js';
import { runMeasuredChild } from '../lib/measured-child.js';
import { listenDrops } from '../lib/netstat.js';
import { type BenchProcess, isShuttingDown, startProcess } from '../lib/processes.js';
import {
  type ProxyName,
  type ProxyStartOptions,
  proxyUnavailableReason,
  REPO_ROOT,
  type RunningProxy,
  startProxy,
} from '../lib/proxies.js';
import { formatCount, formatDecimal, formatMarkdownTable } from '../lib/table.js';

const LEGIT_CLIENT = join(REPO_ROOT, 'dist', 'bench', 'lib', 'abuse-legit.js');
const ATTACKER = join(REPO_ROOT, 'dist', 'bench', 'lib', 'abuse-attacker.js');

/**
 * unhitch-limits' settings: what the docs recommend for a public tracker (docs/pending/limits.md
 * and timers.md of issue 20). Per address: a browser holds one WebSocket per tracker and
 * reconnects rarely; 64 open and 20 new per second leave room for carrier-grade NAT. A request
 * head (the upgrade) comes right after the handshake; the idle timeout sits above the 10-minute
 * announce interval; a large backlog holds newcomers while max-handshakes pauses accepting (a
 * refused attacker also reconnects at once: at Hitch's 100 the queue overflowed, 13,540
 * ListenDrops and a legitimate p99 of 1.1 s in a 4 s slowloris-before row on a loaded machine;
 * 1,253 and 0.28 s at 1,024). --limits replaces the whole list.
 */
export const RECOMMENDED_LIMITS = {
  perIpMaxConnections: 64,
  perIpConnectionRate: 20,
  denyRepeatOffenders: '20/60s:10m',
  maxHandshakes: 512,
  backlog: 4096,
  sslHandshakeTimeoutSeconds: 10,
  requestHeadTimeoutSeconds: 10,
  idleTimeoutSeconds: 1200,
} as const;
const DEFAULT_LIMIT_FLAGS: readonly string[] = [
  `--per-ip-max-connections=${RECOMMENDED_LIMITS.perIpMaxConnections}`,
  `--per-ip-connection-rate=${RECOMMENDED_LIMITS.perIpConnectionRate}`,
  `--deny-repeat-offenders=${RECOMMENDED_LIMITS.denyRepeatOffenders}`,
  `--max-handshakes=${RECOMMENDED_LIMITS.maxHandshakes}`,
  `--backlog=${RECOMMENDED_LIMITS.backlog}`,
  `--ssl-handshake-timeout=${RECOMMENDED_LIMITS.sslHandshakeTimeoutSeconds}`,
  '--forwarded-for=on',
  `--request-head-timeout=${RECOMMENDED_LIMITS.requestHeadTimeoutSeconds}`,
  `--idle-timeout=${RECOMMENDED_LIMITS.idleTimeoutSeconds}`,
];

/**
 * HAProxy as an operator would protect a public tracker: a stick table per source address with
 * the same ceilings as unhitch-limits (concurrent connections, new connections per second),
 * rejected at `tcp-request connection` (before the TLS handshake), abnormal sessions logged in
 * tcplog format, and an idle timeout above the announce interval. HAProxy 2.6 has no separate
 * handshake timeout (`timeout client-hs` came in 2.8): `timeout client` bounds the handshake;
 * `timeout http-request` is HTTP mode only.
 */
export const HAPROXY_OPERATOR_LINES: readonly string[] = [
  'log global',
  'option tcplog',
  'option dontlognull',
  'option dontlog-normal',
  'stick-table type ip size 1m expire 60s store conn_cur,conn_rate(1s)',
  'tcp-request connection track-sc0 src',
  `tcp-request connection reject if { sc_conn_cur(0) ge ${RECOMMENDED_LIMITS.perIpMaxConnections} }`,
  `tcp-request connection reject if { sc_conn_rate(0) gt ${RECOMMENDED_LIMITS.perIpConnectionRate} }`,
  `timeout client ${RECOMMENDED_LIMITS.idleTimeoutSeconds}s`,
];

interface AbuseSettings {
  readonly rows: readonly RowKind[];
  readonly durationSeconds: number;
  readonly warmupSeconds: number;
  readonly clients: number;
  readonly rate: number;
  readonly sockets: number;
  readonly slowSockets: number;
  readonly lanes: number;
  readonly tickleMs: number;
  readonly limitFlags: readonly string[];
}

function settingsFrom(flags: Flags, quick: boolean): AbuseSettings {
  const rows = listFlag(flags, 'attacks', ROWS);
  for (const row of rows) {
    if (!(ROWS as readonly string[]).includes(row)) {
      throw Object.assign(new Error(`unknown attack ${row}; known: ${ROWS.join(', ')}`), {
        code: 'BENCH_BAD_ARGUMENT',
      });
    }
  }
  const limits = flags.get('limits');
  return {
    rows: rows as RowKind[],
    durationSeconds: positiveFlag(flags, 'duration', quick ? 2 : 8),
    warmupSeconds: numberFlag(flags, 'warmup', quick ? 0.5 : 1),
    clients: Math.round(positiveFlag(flags, 'clients', quick ? 8 : 16)),
    rate: positiveFlag(flags, 'rate', quick ? 40 : 80),
    sockets: Math.round(positiveFlag(flags, 'sockets', quick ? 400 : 4000)),
    slowSockets: Math.round(positiveFlag(flags, 'slow-sockets', quick ? 100 : 400)),
    lanes: Math.round(positiveFlag(flags, 'lanes', quick ? 16 : 48)),
    tickleMs: positiveFlag(flags, 'tickle-ms', 2000),
    limitFlags:
      limits === undefined ? DEFAULT_LIMIT_FLAGS : limits.split(/\s+/).filter((f) => f !== ''),
  };
}

/** The attacker's arguments for a row, its bounds included. */
function attackerArgs(
  attack: AttackKind,
  settings: AbuseSettings,
  port: number,
  maxSeconds: number,
): string[] {
  const held = attack === 'idle' || attack === 'slowloris-pre';
  const slow = attack === 'slow-hello' || attack === 'slowloris-post';
  return [
    ATTACKER,
    `--attack=${attack}`,
    `--port=${port}`,
    '--source=127.0.0.2',
    `--sockets=${held ? settings.sockets : settings.slowSockets}`,
    `--lanes=${settings.lanes}`,
    `--tickle-ms=${settings.tickleMs}`,
    `--max-seconds=${maxSeconds}`,
    // Floods: as fast as the attacker's share of its CPU allows, up to 5,000 connections/s;
    // held sockets: reopened no faster than 2,000/s. Never more than 100,000 in one row.
    `--connect-rate=${held || slow ? 2000 : 5000}`,
    '--max-connects=100000',
  ];
}

/** How a proxy is started for a row: unhitch-limits gets the limits, HAProxy the stick table. */
function proxyExtras(
  name: ProxyName,
  row: RowKind,
  settings: AbuseSettings,
): Pick<ProxyStartOptions, 'extraArgs' | 'haproxy'> {
  switch (name) {
    case 'unhitch':
      // After the handshake only unhitch reads the request head (forwarded-for, on in the
      // recommended limits); Hitch and HAProxy in TCP mode relay the trickle to the backend.
      return { extraArgs: row === 'slowloris-post' ? ['--forwarded-for=on'] : [] };
    case 'unhitch-limits':
      return { extraArgs: settings.limitFlags };
    case 'haproxy':
      return { haproxy: { logLevel: 'info', frontendLines: HAPROXY_OPERATOR_LINES } };
    default:
      return {};
  }
}

/** One attack × proxy. */
interface RowRun {
  readonly proxy: ProxyName;
  readonly row: RowKind;
  readonly legit: LegitResult;
  readonly attacker: AttackerResult | null;
  readonly rssPeakKiB: number;
  /** Proxy tree CPU over the attack, % of one CPU. */
  readonly cpuPercent: number;
  readonly logBytes: number;
  /** The machine's listen-queue drops over the attack (null: not readable). */
  readonly listenDrops: number | null;
  readonly otherLoadOnProxyCpuPercent: number | null;
}

const RSS_SAMPLE_MS = 250;
/** The attacker says when it is at full strength; past this the row goes on anyway. */
const ATTACK_RAMP_WAIT_MS = 6_000;

/** Counts the bytes a process writes to stdout and stderr from now on. */
function countOutput(handle: BenchProcess): { bytes(): number } {
  let bytes = 0;
  const add = (chunk: string | Buffer): void => {
    bytes += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
  };
  handle.child.stdout?.on('data', add);
  handle.child.stderr?.on('data', add);
  return { bytes: () => bytes };
}

/** Peak RSS of a process tree, sampled every RSS_SAMPLE_MS until stopped. */
function sampleRssPeak(pid: number): { stop(): number } {
  let peak = treeRssKiB(pid);
  const timer = setInterval(() => {
    peak = Math.max(peak, treeRssKiB(pid));
  }, RSS_SAMPLE_MS);
  return {
    stop: () => {
      clearInterval(timer);
      return Math.max(peak, treeRssKiB(pid));
    },
  };
}
/** Starts the attacker and resolves once it says it is at full strength. */
function startAttacker(
  args: string[],
  cpu: string,
): Promise<{ handle: BenchProcess; result: Promise<AttackerResult | null> }> {
  let resolveResult: (result: AttackerResult | null) => void = () => {};
  const result = new Promise<AttackerResult | null>((resolve) => {
    resolveResult = resolve;
  });
  return new Promise((resolve, reject) => {
    let attacking: () => void = () => {};
    const handle = startProcess({
      name: 'abuse-attacker',
      // nice 19: on the shared load CPU the legitimate clients and the backend come first.
      command: 'nice',
      args: ['-n', '19', process.execPath, ...args],
      cpu,
      onStdoutLine: (line) => {
        if (!line.startsWith('{')) return;
        const event = JSON.parse(line) as { event?: string; result?: AttackerResult };
        if (event.event === 'attacking') attacking();
        if (event.event === 'result') resolveResult(event.result ?? null);
      },
    });
    const timer = setTimeout(() => attacking(), ATTACK_RAMP_WAIT_MS);
    attacking = () => {
      clearTimeout(timer);
      attacking = () => {};
      resolve({ handle, result });
    };
    // 'close', not 'exit': the result line may still be in the stdout pipe when 'exit' fires.
    handle.child.once('close', () => resolveResult(null));
    void handle.exited.then((status) => {
      if (status !== 0) {
        clearTimeout(timer);
        reject(new Error(`abuse-attacker exited (${status}): ${handle.stderrTail().trim()}`));
      }
    });
  });
}

async function runRow(
  bench: BenchContext,
  settings: AbuseSettings,
  name: ProxyName,
  row: RowKind,
  backend: RunningBackend,
): Promise<RowRun> {
  const proxy: RunningProxy = await startProxy(name, {
    frontendPort: await freePort(),
    backendPort: backend.port,
    combinedPemPath: bench.certificate().combinedPemPath,
    cpu: bench.proxyCpu,
    workDirectory: bench.workDirectory,
    openFilesLimit: 20_000,
    verbose: true,
    ...proxyExtras(name, row, settings),
  });
  const proxyProcess = proxy.process as BenchProcess;
  try {
    const output = countOutput(proxyProcess);
    const pid = proxyProcess.pid;
    const maxSeconds = settings.warmupSeconds + settings.durationSeconds + 15;
    const logBefore = output.bytes();
    const cpuBefore = treeCpuMicros(pid);
    const dropsBefore = listenDrops();
    const startedAt = performance.now();
    const rss = sampleRssPeak(pid);
    let attacker: Awaited<ReturnType<typeof startAttacker>> | null = null;
    let legit: Awaited<ReturnType<typeof runMeasuredChild<LegitResult>>>;
    let rssPeakKiB: number;
    try {
      if (row !== 'baseline') {
        attacker = await startAttacker(
          attackerArgs(row, settings, proxy.port, maxSeconds),
          bench.loadCpu,
        );
      }
      legit = await runMeasuredChild<LegitResult>({
        name: 'abuse-legit',
        command: process.execPath,
        args: [
          LEGIT_CLIENT,
          `--port=${proxy.port}`,
          `--clients=${settings.clients}`,
          `--rate=${settings.rate}`,
          `--warmup=${settings.warmupSeconds}`,
          `--duration=${settings.durationSeconds}`,
        ],
        cpu: bench.loadCpu,
        proxyPid: pid,
        proxyCpus: bench.proxyCpus,
      });
    } finally {
      await attacker?.handle.stop();
      rssPeakKiB = rss.stop();
    }
    const attackerResult = (await attacker?.result) ?? null;
    const seconds = (performance.now() - startedAt) / 1000;
    const dropsAfter = listenDrops();
    return {
      proxy: name,
      row,
      legit: legit.result,
      attacker: attackerResult,
      rssPeakKiB,
      cpuPercent: ((treeCpuMicros(pid) - cpuBefore) / (seconds * 1e6)) * 100,
      logBytes: output.bytes() - logBefore,
      listenDrops: dropsBefore === null || dropsAfter === null ? null : dropsAfter - dropsBefore,
      otherLoadOnProxyCpuPercent: legit.otherLoadOnProxyCpuPercent,
    };
  } finally {
    await proxyProcess.stop();
  }
}

/** The share of the window's sessions that succeeded, %. */
function successPercent(legit: LegitResult): number | null {
  return legit.sessions > 0 ? (legit.succeeded / legit.sessions) * 100 : null;
}

function failedSteps(legit: LegitResult): string {
  const steps = Object.entries(legit.failedAt).filter(([, count]) => count > 0);
  return steps.length === 0 ? '' : ` (${steps.map(([s, n]) => `${n} at ${s}`).join(', ')})`;
}

function attackerCell(attacker: AttackerResult | null): string {
  if (attacker === null) return '–';
  return `${formatCount(attacker.connects)} / ${formatCount(attacker.maxOpen)} / ${formatCount(attacker.closedByProxy)}`;
}

function resultTable(runs: readonly RowRun[], bench: BenchContext): string {
  const rows = runs.map((run) => {
    const baseline = runs.find((r) => r.proxy === run.proxy && r.row === 'baseline');
    const baselineP99 = baseline?.legit.handshakeP99Ms ?? null;
    const p99 = run.legit.handshakeP99Ms;
    return [
      ROW_LABELS[run.row],
      run.proxy,
      formatCount(run.legit.sessions),
      `${formatDecimal(successPercent(run.legit), 1)}${failedSteps(run.legit)}`,
      formatDecimal(run.legit.handshakeP50Ms, 1),
      formatDecimal(p99, 1),
      p99 !== null && baselineP99 !== null && baselineP99 > 0
        ? `${(p99 / baselineP99).toFixed(2)}×`
        : '–',
      formatDecimal(run.rssPeakKiB / 1024, 1),
      formatDecimal(run.cpuPercent, 0),
      formatCount(run.logBytes),
      attackerCell(run.attacker),
      run.listenDrops === null ? '–' : formatCount(run.listenDrops),
      bench.reliability.otherLoadCell(`${run.proxy} ${run.row}`, run.otherLoadOnProxyCpuPercent),
      verdict(run.legit, baselineP99, run.row === 'baseline'),
    ];
  });
  return formatMarkdownTable([...ABUSE_TABLE_HEADER], rows);
}

function notes(settings: AbuseSettings, bench: BenchContext): string[] {
  const held = settings.sockets;
  const slow = settings.slowSockets;
  return [
    `- Layout: proxy (1 worker or thread) on CPU ${bench.proxyCpu}; uws tracker backend, legitimate clients and the attacker (at nice 19) on CPU ${bench.loadCpu}. Each row starts the proxy afresh.`,
    `- Legitimate population: ${settings.clients} clients, each from its own address (127.0.1.1 …), ${settings.rate} sessions/s between them; a session is TCP connect, TLS 1.3 handshake (X25519), WebSocket upgrade, one announce, its reply, close; it fails if any step fails or it takes over 5 s. Latency: connect call → handshake done. ${settings.warmupSeconds} s warm-up under attack, ${settings.durationSeconds} s measured.`,
    `- Attacker from 127.0.0.2, started before the warm-up and stopped after the window: idle = ${formatCount(held)} connections that send nothing; ClientHello in 1-byte records = ${slow} connections, ${4} records every 50 ms, then again; plaintext flood = ${settings.lanes} loops of an HTTP request in clear; handshake flood = ${settings.lanes} loops of full TLS handshakes; slowloris before = ${formatCount(held)} connections trickling a ClientHello a byte every ${settings.tickleMs / 1000} s; slowloris after = ${slow} connections that finish the handshake, then trickle an HTTP request head a byte every ${settings.tickleMs / 1000} s. A connection the proxy ends is reopened (100 ms later; floods at once), at most 5,000 new connections/s and 100,000 per row; the attacker resets its connections (no TIME_WAIT). The attacker column: connections attempted / most open at once as the attacker sees them (a connection the kernel completed but the proxy has not accepted yet counts) / ended by the proxy.`,
    `- unhitch: drop-in defaults. unhitch-limits: \`${settings.limitFlags.join(' ')}\`. unhitch runs with \`--forwarded-for=on\` in the slowloris-after rows (the only case where unhitch reads the request head); Hitch and HAProxy (mode tcp) relay the trickle to the backend. Hitch has no per-client limit of any kind.`,
    `- HAProxy (${HAPROXY_OPERATOR_LINES.length} lines in its frontend): \`${HAPROXY_OPERATOR_LINES.join('; ')}\`; global log level info to stderr. HAProxy 2.6 has no separate handshake timeout (\`timeout client-hs\` is 2.8+) and \`timeout http-request\` applies to mode http only.`,
    "- Listen drops: the kernel's ListenDrops (/proc/net/netstat) over the attack, the whole machine's: connections dropped because a listen queue was full, which a client sees as a 1 s (then 3 s) retransmission in its handshake latency.",
    '- Proxy RSS peak: the process tree, sampled every 250 ms from the attacker start to its stop; CPU: the tree over the same span, % of one CPU; log bytes: what the proxy wrote to stdout and stderr over that span (default log levels: unhitch info, Hitch 1, HAProxy info with dontlog-normal).',
    `- Target (unhitch-limits): every legitimate session succeeds and the handshake p99 stays within ${P99_TARGET_FACTOR}× the same proxy's attack-free run; the Verdict column applies it to every row.`,
  ];
}

runBench({
  name: 'abuse',
  flags: [
    'proxies',
    'attacks',
    'duration',
    'warmup',
    'clients',
    'rate',
    'sockets',
    'slow-sockets',
    'lanes',
    'tickle-ms',
    'limits',
    'quick',
    'no-write',
    'proxy-cpu',
    'load-cpu',
  ],
  defaultProxies: ['unhitch-limits', 'unhitch', 'hitch', 'haproxy'],
  run: async (bench) => {
    const settings = settingsFrom(bench.flags, bench.quick);
    const runnable = bench.proxies.filter((name) => {
      const reason =
        name === 'unhitch' || name === 'unhitch-limits' || name === 'hitch' || name === 'haproxy'
          ? proxyUnavailableReason(name)
          : 'abuse runs unhitch, unhitch-limits, hitch and haproxy';
      if (reason !== null) bench.skipped.push(`${name}: ${reason}`);
      return reason === null;
    });
    const backend = await startBackend(builtinBackend('uws'), bench.loadCpu, 20_000);
    const runs: RowRun[] = [];
    try {
      for (const name of runnable) {
        for (const row of settings.rows) {
          if (isShuttingDown()) break;
          process.stderr.write(`== ${name} | ${ROW_LABELS[row]}\n`);
          try {
            const run = await runRow(bench, settings, name, row, backend);
            runs.push(run);
            process.stderr.write(
              `   ${run.legit.succeeded}/${run.legit.sessions} ok${failedSteps(run.legit)}, p50 ${formatDecimal(run.legit.handshakeP50Ms)} ms, p99 ${formatDecimal(run.legit.handshakeP99Ms)} ms, CPU ${formatDecimal(run.cpuPercent, 0)} %, log ${formatCount(run.logBytes)} B, attacker ${attackerCell(run.attacker)}\n`,
            );
          } catch (err) {
            bench.skipped.push(`${name} × ${row}: ${(err as Error).message}`);
            process.stderr.write(`failed: ${name} × ${row}: ${(err as Error).message}\n`);
          }
        }
      }
    } finally {
      await backend.process.stop();
    }
    const table = resultTable(runs, bench);
    const limited = runs.filter((run) => run.proxy === 'unhitch-limits');
    const failing = limited.filter((run) => {
      const baseline = runs.find((r) => r.proxy === run.proxy && r.row === 'baseline');
      return (
        verdict(run.legit, baseline?.legit.handshakeP99Ms ?? null, run.row === 'baseline') ===
        'FAIL'
      );
    });
    const summary =
      limited.length === 0
        ? 'abuse: unhitch-limits not run'
        : failing.length === 0
          ? `abuse: unhitch-limits met the target in all ${limited.length} rows`
          : `abuse: unhitch-limits missed the target in ${failing.map((run) => run.row).join(', ')}`;
    return {
      stdout: table,
      verdict: summary,
      results: {
        heading: '## abuse: legitimate tracker clients beside one attacker at a time',
        notes: notes(settings, bench),
        blocks: [table, summary.replace(/^abuse: /, 'Verdict: ')],
      },
    };
  },
});
