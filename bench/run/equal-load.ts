/**
 * Proxy CPU per relayed WebTorrent message and per full/resumed TLS 1.3 handshake, compared at
 * EQUAL offered load. A closed-loop run gives each proxy its own rate (the fastest gets the
 * most work, and a proxy 30 % busy pays per-wake-up overheads a saturated one does not), so
 * its µs per unit are not comparable. Here a saturation run first finds each proxy's maximum
 * (closed loop), then every proxy gets the same open-loop rate: --loads percent (default 50
 * and 80) of the SLOWEST proxy's maximum, interleaved round after round (--repeat).
 *   node dist/bench/equal-load.js [--proxies=unhitch,hitch,haproxy] [--backend=uws]
 *     [--kinds=messages,full,resumed,full-hybrid] [--loads=50,80] [--connections=1020]
 *     [--duration=10] [--warmup=2] [--repeat=3] [--workers=2] [--concurrency=32]
 *     [--groups=X25519] [--quick] [--no-write]
 * Messages: wt-load with --announce-rate (announces/s round-robin over the connections);
 * handshakes: the handshake client with --rate. The ratio lines come from the highest load.
 *
 * Equal load is also equal work: `full` and `resumed` clients offer only --groups
 * (X25519), the key exchange Hitch and HAProxy on OpenSSL 3.0 choose anyway. Offered
 * node's default list, unhitch (OpenSSL 3.5) chooses the X25519MLKEM768 hybrid, which costs
 * more and which those cannot do: `full-hybrid` and `resumed-hybrid` offer it as browsers
 * do, and every row names the group the proxy chose.
 */
import { join } from 'node:path';
import { builtinBackend, type RunningBackend, startBackend } from '../lib/backends.js';
import { listFlag, numberFlag } from '../lib/cli-args.js';
import { groupsChosen, HYBRID_OFFER } from '../lib/groups.js';
import { runBench } from '../lib/harness.js';
import { loadAverage } from '../lib/machine.js';
import { runMeasuredChild } from '../lib/measured-child.js';
import {
  measureInTurns,
  type ProxyName,
  REPO_ROOT,
  type RunningProxy,
  runnableTerminators,
} from '../lib/proxies.js';
import { UNRELIABLE_OTHER_LOAD_PERCENT } from '../lib/reliability.js';
import {
  equalLoadRatioLine,
  formatCount,
  formatDecimal,
  formatMarkdownTable,
  median,
} from '../lib/table.js';
import type { LoadResult } from '../wt-load/run.js';

const WT_LOAD = join(REPO_ROOT, 'dist', 'bench', 'wt-load', 'main.js');
const HANDSHAKE_CLIENT = join(REPO_ROOT, 'dist', 'bench', 'lib', 'handshake-client.js');

type PlainKind = 'messages' | 'full' | 'resumed';
type Kind = PlainKind | 'full-hybrid' | 'resumed-hybrid';
const KINDS: readonly Kind[] = ['messages', 'full', 'resumed', 'full-hybrid', 'resumed-hybrid'];
const DEFAULT_KINDS: readonly Kind[] = ['messages', 'full', 'resumed', 'full-hybrid'];
const UNIT: Record<Kind, string> = {
  messages: 'response',
  full: 'full handshake',
  resumed: 'resumed handshake',
  'full-hybrid': 'full handshake',
  'resumed-hybrid': 'resumed handshake',
};
/** References measured beside the proxies, not used to pick the offered rate. */
const FLOORS: readonly ProxyName[] = ['node-tls', 'node-tls-bare'];

/** One client run against one proxy. */
export interface UnitRun {
  /** Offered units/s (null: closed loop, the saturation run). */
  readonly offered: number | null;
  /** Units/s achieved: responses/s for messages, handshakes/s otherwise. */
  readonly achieved: number;
  /** Rate the load percentages refer to: announces/s for messages, handshakes/s otherwise. */
  readonly paceRate: number;
  readonly proxyCpuMicrosPerUnit: number | null;
  readonly proxyBusyPercent: number | null;
  /** Due but not sent (open loop). */
  readonly missed: number;
  readonly errors: number;
  readonly otherLoadOnProxyCpuPercent: number | null;
  /** Handshakes: how often the proxy chose each key-exchange group (none for messages). */
  readonly groups: Readonly<Record<string, number>>;
}

interface HandshakeResult {
  readonly seconds: number;
  readonly handshakes: number;
  readonly handshakesPerSecond: number;
  readonly failures: number;
  readonly missed?: number;
  readonly groups?: Record<string, number>;
}

runBench({
  name: 'equal-load',
  flags: [
    'proxies',
    'backend',
    'kinds',
    'loads',
    'connections',
    'duration',
    'warmup',
    'repeat',
    'workers',
    'concurrency',
    'groups',
    'quick',
    'no-write',
    'proxy-cpu',
    'load-cpu',
  ],
  defaultProxies: ['unhitch', 'hitch', 'haproxy'],
  run: async (bench) => {
    const { flags, quick, proxyCpu, loadCpu, repeat, skipped } = bench;
    const duration = numberFlag(flags, 'duration', quick ? 3 : 10);
    const warmup = numberFlag(flags, 'warmup', quick ? 1 : 2);
    const connections = numberFlag(flags, 'connections', quick ? 100 : 1020);
    const handshakeWorkers = numberFlag(flags, 'workers', 2);
    const concurrency = numberFlag(flags, 'concurrency', 32);
    const backendName = flags.get('backend') ?? 'uws';
    const groups = flags.get('groups') ?? 'X25519';
    const kinds = listFlag(flags, 'kinds', DEFAULT_KINDS).map((text) => {
      if (!KINDS.includes(text as Kind)) {
        throw Object.assign(new Error(`--kinds: unknown ${text}; known: ${KINDS.join(', ')}`), {
          code: 'BENCH_BAD_ARGUMENT',
        });
      }
      return text as Kind;
    });
    const loads = listFlag(flags, 'loads', ['50', '80']).map(Number);
    if (loads.some((load) => !(load > 0 && load <= 100))) {
      throw Object.assign(new Error('--loads takes percentages in (0, 100]'), {
        code: 'BENCH_BAD_ARGUMENT',
      });
    }
    const loadAverageAtStart = loadAverage();
    const openFilesLimit = Math.max(connections * 2 + 1024, 4096);
    const certificate = bench.certificate();
    const runnable = runnableTerminators(bench.proxies, skipped, 'equal-load compares TLS proxies');
    // node-tls-bare relays nothing: it is the handshake floor only.
    const proxiesFor = (kind: Kind): ProxyName[] =>
      runnable.filter((name) => kind !== 'messages' || name !== 'node-tls-bare');
    // The floors (node:tls pipe, bare node:tls) are measured at the same rates but do not set
    // them: the rate is a share of the slowest real proxy's maximum.
    const setsRate = (name: ProxyName): boolean => !FLOORS.includes(name);
    const tracker: RunningBackend | null = kinds.includes('messages')
      ? await startBackend(builtinBackend(backendName), loadCpu, openFilesLimit)
      : null;
    const sink = kinds.some((kind) => kind !== 'messages')
      ? await bench.startBackend('tcp-sink')
      : null;

    const runOnce = async (
      proxy: RunningProxy,
      kind: Kind,
      rate: number | null,
    ): Promise<UnitRun> => {
      const proxyPid = proxy.process?.pid ?? null;
      if (kind === 'messages') {
        const measured = await runMeasuredChild<LoadResult>({
          name: 'wt-load',
          command: process.execPath,
          args: [
            WT_LOAD,
            `--url=wss://127.0.0.1:${proxy.port}`,
            `--connections=${connections}`,
            '--num-workers=1',
            '--connection-creation-interval-ms=1',
            `--duration=${duration}`,
            `--warmup=${warmup}`,
            `--announce-rate=${rate ?? 0}`,
            '--events',
          ],
          cpu: loadCpu,
          openFilesLimit,
          proxyPid,
          proxyCpus: bench.proxyCpus,
        });
        const r = measured.result;
        return {
          offered: rate,
          achieved: r.responsesPerSecond,
          paceRate: r.responsesPerSecondByKind.announce,
          proxyCpuMicrosPerUnit:
            measured.proxyCpuMicros !== null && r.responses > 0
              ? measured.proxyCpuMicros / r.responses
              : null,
          proxyBusyPercent:
            measured.proxyCpuMicros === null
              ? null
              : (measured.proxyCpuMicros / (r.measuredSeconds * 1e6)) * 100,
          missed: r.announcesMissed ?? 0,
          errors: r.errors,
          otherLoadOnProxyCpuPercent: measured.otherLoadOnProxyCpuPercent,
          groups: {},
        };
      }
      const hybrid = kind.endsWith('-hybrid');
      const measured = await runMeasuredChild<HandshakeResult>({
        name: `handshake-client ${kind}`,
        command: process.execPath,
        args: [
          HANDSHAKE_CLIENT,
          `--port=${proxy.port}`,
          `--mode=${kind.startsWith('full') ? 'full' : 'resumed'}`,
          `--groups=${hybrid ? HYBRID_OFFER : groups}`,
          `--workers=${handshakeWorkers}`,
          `--concurrency=${concurrency}`,
          `--rate=${rate ?? 0}`,
          `--warmup=${warmup}`,
          `--duration=${duration}`,
        ],
        cpu: loadCpu,
        proxyPid,
        proxyCpus: bench.proxyCpus,
      });
      const r = measured.result;
      return {
        offered: rate,
        achieved: r.handshakesPerSecond,
        paceRate: r.handshakesPerSecond,
        proxyCpuMicrosPerUnit:
          measured.proxyCpuMicros !== null && r.handshakes > 0
            ? measured.proxyCpuMicros / r.handshakes
            : null,
        proxyBusyPercent:
          measured.proxyCpuMicros === null
            ? null
            : (measured.proxyCpuMicros / (r.seconds * 1e6)) * 100,
        missed: r.missed ?? 0,
        errors: r.failures,
        otherLoadOnProxyCpuPercent: measured.otherLoadOnProxyCpuPercent,
        groups: r.groups ?? {},
      };
    };

    const start = (kind: Kind) => ({
      backendPort: kind === 'messages' ? (tracker?.port ?? 0) : (sink?.port ?? 0),
      combinedPemPath: certificate.combinedPemPath,
      cpu: proxyCpu,
      workDirectory: bench.workDirectory,
      openFilesLimit,
    });
    const key = (kind: Kind, proxy: string, load: number | 'max'): string =>
      `${kind} ${proxy} ${load}`;
    const runs = new Map<string, UnitRun[]>();
    const push = (k: string, run: UnitRun): void => {
      const list = runs.get(k) ?? [];
      list.push(run);
      runs.set(k, list);
    };
    const log = (kind: Kind, name: string, label: string, run: UnitRun): void => {
      const chosen = groupsChosen([run.groups]);
      process.stderr.write(
        `   ${kind} | ${name} | ${label} | ${formatCount(run.achieved)}/s | ${formatDecimal(run.proxyCpuMicrosPerUnit)} µs | busy ${formatDecimal(run.proxyBusyPercent, 0)} % | missed ${run.missed} | errors ${run.errors}${chosen === '' ? '' : ` | ${chosen}`}\n`,
      );
    };

    // 1. Saturation: each proxy's own maximum (closed loop), once per proxy.
    // A hybrid kind is offered its plain kind's rates, so the surcharge is at the same load.
    const offeredRates = new Map<Kind, Map<number, number>>();
    for (const kind of kinds) {
      const plainRates = offeredRates.get(plainKind(kind));
      if (plainKind(kind) !== kind && plainRates !== undefined) {
        offeredRates.set(kind, plainRates);
        continue;
      }
      await measureInTurns({
        proxies: proxiesFor(kind),
        repeat: 1,
        start: start(kind),
        skipped,
        measure: async (proxy) => {
          const run = await runOnce(proxy, kind, null);
          push(key(kind, proxy.name, 'max'), run);
          log(kind, proxy.name, 'saturation', run);
        },
      });
      const rateSetters = proxiesFor(kind).filter(setsRate);
      const maxima = (rateSetters.length > 0 ? rateSetters : proxiesFor(kind))
        .map((name) => runs.get(key(kind, name, 'max'))?.[0]?.paceRate ?? null)
        .filter((value): value is number => value !== null && value > 0);
      if (maxima.length === 0) {
        skipped.push(`${kind}: no proxy completed its saturation run`);
        continue;
      }
      const slowest = Math.min(...maxima);
      offeredRates.set(kind, new Map(loads.map((load) => [load, (slowest * load) / 100])));
    }

    // 2. Equal load: every proxy the same offered rate, proxies taking turns each round.
    for (const [kind, rates] of offeredRates) {
      await measureInTurns({
        proxies: proxiesFor(kind),
        repeat,
        start: start(kind),
        skipped,
        measure: async (proxy) => {
          for (const [load, rate] of rates) {
            const run = await runOnce(proxy, kind, Math.max(1, Math.round(rate)));
            push(key(kind, proxy.name, load), run);
            log(kind, proxy.name, `${load} %`, run);
          }
        },
      });
    }
    await tracker?.process.stop();
    await sink?.stop();

    const rows: string[][] = [];
    const ratioLines: string[] = [];
    for (const kind of kinds) {
      const rates = offeredRates.get(kind);
      const columns: (number | 'max')[] = ['max', ...loads];
      for (const column of columns) {
        for (const name of proxiesFor(kind)) {
          const list = runs.get(key(kind, name, column)) ?? [];
          if (list.length === 0) continue;
          const otherMax = Math.max(...list.map((run) => run.otherLoadOnProxyCpuPercent ?? 0));
          const offered = column === 'max' ? null : rates?.get(column);
          rows.push([
            kind,
            column === 'max'
              ? 'saturation (own max)'
              : `${column} % = ${formatCount(offered ?? 0)}${kind === 'messages' ? ' announces' : ''}/s`,
            name,
            formatCount(median(list.map((run) => run.achieved)) ?? 0),
            formatDecimal(median(list.map((run) => run.proxyCpuMicrosPerUnit))),
            list.map((run) => formatDecimal(run.proxyCpuMicrosPerUnit)).join(', '),
            formatDecimal(median(list.map((run) => run.proxyBusyPercent)), 0),
            String(list.reduce((sum, run) => sum + run.missed, 0)),
            String(list.reduce((sum, run) => sum + run.errors, 0)),
            bench.reliability.otherLoadCell(`${name} ${kind} ${column}`, otherMax),
            groupsChosen(list.map((run) => run.groups)) || '—',
          ]);
        }
      }
      const top = Math.max(...loads);
      const cpuAt = (name: ProxyName): number | null =>
        median((runs.get(key(kind, name, top)) ?? []).map((run) => run.proxyCpuMicrosPerUnit));
      const offered = rates?.get(top);
      const plain = plainKind(kind);
      if (plain !== kind) {
        const chosen = groupsChosen(
          (runs.get(key(kind, 'unhitch', top)) ?? []).map((r) => r.groups),
        );
        const line = hybridSurchargeLine(
          UNIT[kind],
          cpuAt('unhitch'),
          median((runs.get(key(plain, 'unhitch', top)) ?? []).map((r) => r.proxyCpuMicrosPerUnit)),
          groups,
          chosen,
        );
        if (line !== null) ratioLines.push(line);
        continue;
      }
      const line =
        offered === undefined
          ? null
          : equalLoadRatioLine(
              plain,
              cpuAt('unhitch'),
              cpuAt('hitch'),
              `${top} % of the slowest proxy's maximum, ${formatCount(offered)} ${kind === 'messages' ? 'announces' : `${UNIT[kind]}s`}/s offered to each, median of ${repeat}`,
            );
      if (line !== null) ratioLines.push(line);
    }
    const table = formatMarkdownTable(
      [
        'Kind',
        'Offered load',
        'Proxy',
        'Achieved /s',
        'Proxy CPU µs/unit',
        'Each run µs',
        'Proxy CPU busy %',
        'Missed (due, not sent)',
        'Errors',
        'Other load on proxy CPU % (max)',
        'Key exchange (chosen)',
      ],
      rows,
    );
    const loadAverageAtEnd = loadAverage();
    const reliableRatioLines = bench.reliability.ratioLines(ratioLines);
    const noiseNote = bench.reliability.unreliable
      ? []
      : [
          `- Other processes took at most ${UNRELIABLE_OTHER_LOAD_PERCENT} % of the proxy CPU in every run.`,
        ];
    return {
      stdout: `${table}\n\n${reliableRatioLines.join('\n')}`,
      results: {
        heading: '## equal-load: proxy CPU per message and per handshake at the same offered rate',
        notes: [
          `- Layout: proxy on CPU ${proxyCpu}; clients and backends (${backendName} for messages, a TCP sink for handshakes) on CPU ${loadCpu}; ${warmup} s warm-up, ${duration} s measured per run.`,
          `- Saturation rows: closed loop, each proxy at its own maximum (once). Equal-load rows: open loop at ${loads.join(' % and ')} % of the slowest proxy's maximum (node-tls and node-tls-bare, the node:tls floors, are measured at the same rates but do not set them) (announces/s for messages, over ${connections} connections; handshakes/s with at most ${concurrency} in flight per client worker × ${handshakeWorkers}), every proxy the same rate, ${repeat} round(s) with the proxies taking turns; median shown. Unit: a relayed response (announce reply, offer or answer) for messages, a handshake otherwise.`,
          `- Key exchange: \`full\` and \`resumed\` clients offer only ${groups} (what Hitch and HAProxy on OpenSSL 3.0 choose anyway), so every proxy does the same work; \`full-hybrid\`/\`resumed-hybrid\` clients offer ${HYBRID_OFFER} as browsers do, and unhitch (OpenSSL 3.5) then chooses the post-quantum hybrid. The last column names the group each proxy chose.`,
          `- Machine load average (1/5/15 min) at start: ${loadAverageAtStart}; at end: ${loadAverageAtEnd}.`,
          ...noiseNote,
        ],
        blocks: [
          table,
          ...(reliableRatioLines.length > 0
            ? [
                'The ratio lines below come from the equal-load rows at the highest load (not from a saturation run):',
                ...reliableRatioLines,
              ]
            : []),
        ],
        references: true,
      },
    };
  },
});

/** The kind a hybrid kind is compared with (itself for the others). */
function plainKind(kind: Kind): PlainKind {
  if (kind === 'full-hybrid') return 'full';
  if (kind === 'resumed-hybrid') return 'resumed';
  return kind;
}

/** What the hybrid group costs unhitch per handshake, both measured at the same load. */
function hybridSurchargeLine(
  unit: string,
  hybridMicros: number | null,
  plainMicros: number | null,
  plainGroups: string,
  chosen: string,
): string | null {
  if (hybridMicros === null || plainMicros === null || plainMicros <= 0) return null;
  const change = ((hybridMicros - plainMicros) / plainMicros) * 100;
  const signed = `${change >= 0 ? '+' : '−'}${formatDecimal(Math.abs(change), 0)} %`;
  return `unhitch ${unit}, ${chosen} chosen (${HYBRID_OFFER} offered): ${formatDecimal(hybridMicros)} µs; ${plainGroups} only: ${formatDecimal(plainMicros)} µs; hybrid ${signed} at the same load`;
}
