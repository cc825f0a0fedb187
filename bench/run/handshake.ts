/**
 * Full and resumed TLS 1.3 handshakes/s and proxy CPU µs per handshake, per proxy.
 * Proxy pinned to one CPU; node:tls client (worker threads) and a TCP sink backend on the other.
 *   node dist/bench/handshake.js [--proxies=unhitch,hitch,haproxy] [--duration=10] [--warmup=2]
 *     [--concurrency=32] [--workers=2] [--repeat=3] [--groups=X25519] [--quick] [--no-write]
 * --groups: the key-exchange groups the client offers (OpenSSL's colon list; `default` for
 * node's own, which puts the X25519MLKEM768 hybrid first). X25519 by default: what Hitch and
 * HAProxy on OpenSSL 3.0 choose, so every proxy does the same work.
 * With --repeat, the proxies take turns round after round (so slow phases of a shared machine
 * hit them alike) and each row shows the median, with every run's value beside it.
 */
import { join } from 'node:path';
import { numberFlag } from '../lib/cli-args.js';
import { groupsChosen } from '../lib/groups.js';
import { runBench } from '../lib/harness.js';
import { runMeasuredChild } from '../lib/measured-child.js';
import { measureInTurns, REPO_ROOT, runnableTerminators } from '../lib/proxies.js';
import { formatDecimal, formatMarkdownTable, median, ratioTo } from '../lib/table.js';

const CLIENT = join(REPO_ROOT, 'dist', 'bench', 'lib', 'handshake-client.js');

type Mode = 'full' | 'resumed';
const MODES: readonly Mode[] = ['full', 'resumed'];

/** One proxy × mode × run. */
interface HandshakeRun {
  readonly handshakesPerSecond: number;
  readonly proxyCpuMicrosPerHandshake: number | null;
  readonly failures: number;
  readonly clientCpuMicrosPerHandshake: number | null;
  readonly otherLoadOnProxyCpuPercent: number | null;
  /** How often the proxy chose each key-exchange group. */
  readonly groups: Readonly<Record<string, number>>;
}

interface HandshakeResult {
  readonly mode: string;
  readonly handshakesPerSecond: number;
  readonly handshakes: number;
  readonly failures: number;
  readonly clientCpuMicrosPerHandshake: number | null;
  readonly groups?: Record<string, number>;
}

runBench({
  name: 'handshake',
  flags: [
    'proxies',
    'duration',
    'warmup',
    'concurrency',
    'workers',
    'quick',
    'no-write',
    'proxy-cpu',
    'load-cpu',
    'repeat',
    'groups',
  ],
  defaultProxies: ['unhitch', 'hitch', 'haproxy'],
  run: async (bench) => {
    const { flags, quick, proxyCpu, loadCpu, repeat, skipped } = bench;
    const duration = numberFlag(flags, 'duration', quick ? 4 : 10);
    const warmup = numberFlag(flags, 'warmup', quick ? 1 : 2);
    const groupsFlag = flags.get('groups') ?? 'X25519';
    const groups = groupsFlag === 'default' ? '' : groupsFlag;
    const runs = new Map<string, HandshakeRun[]>();
    const runsOf = (name: string, mode: Mode): HandshakeRun[] => {
      const key = `${name} ${mode}`;
      let list = runs.get(key);
      if (list === undefined) {
        list = [];
        runs.set(key, list);
      }
      return list;
    };
    const certificate = bench.certificate();
    const sink = await bench.startBackend('tcp-sink');
    const runnable = runnableTerminators(bench.proxies, skipped, 'handshakes need a TLS proxy');
    await measureInTurns({
      proxies: runnable,
      repeat,
      start: {
        backendPort: sink.port,
        combinedPemPath: certificate.combinedPemPath,
        cpu: proxyCpu,
        workDirectory: bench.workDirectory,
      },
      skipped,
      measure: async (proxy) => {
        const name = proxy.name;
        for (const mode of MODES) {
          const measured = await runMeasuredChild<HandshakeResult>({
            name: `handshake-client ${mode}`,
            command: process.execPath,
            args: [
              CLIENT,
              `--port=${proxy.port}`,
              `--mode=${mode}`,
              `--workers=${numberFlag(flags, 'workers', 2)}`,
              `--concurrency=${numberFlag(flags, 'concurrency', 32)}`,
              `--warmup=${warmup}`,
              `--duration=${duration}`,
              `--groups=${groups}`,
            ],
            cpu: loadCpu,
            proxyPid: proxy.process?.pid ?? null,
            proxyCpus: bench.proxyCpus,
          });
          const r = measured.result;
          const run: HandshakeRun = {
            handshakesPerSecond: r.handshakesPerSecond,
            proxyCpuMicrosPerHandshake:
              measured.proxyCpuMicros !== null && r.handshakes > 0
                ? measured.proxyCpuMicros / r.handshakes
                : null,
            failures: r.failures,
            clientCpuMicrosPerHandshake: r.clientCpuMicrosPerHandshake,
            otherLoadOnProxyCpuPercent: measured.otherLoadOnProxyCpuPercent,
            groups: r.groups ?? {},
          };
          runsOf(name, mode).push(run);
          process.stderr.write(
            `   ${name} | ${mode} | ${Math.round(run.handshakesPerSecond)}/s | ${formatDecimal(run.proxyCpuMicrosPerHandshake)} µs | failures ${run.failures}\n`,
          );
        }
      },
    });
    await sink.stop();
    const rows: string[][] = [];
    const medianCpu = new Map<string, number | null>();
    for (const name of runnable) {
      for (const mode of MODES) {
        const list = runsOf(name, mode);
        if (list.length === 0) continue;
        const cpu = median(list.map((run) => run.proxyCpuMicrosPerHandshake));
        medianCpu.set(`${name} ${mode}`, cpu);
        rows.push([
          name,
          mode,
          Math.round(median(list.map((run) => run.handshakesPerSecond)) ?? 0).toLocaleString(
            'en-US',
          ),
          formatDecimal(cpu),
          ...(repeat > 1
            ? [list.map((run) => formatDecimal(run.proxyCpuMicrosPerHandshake, 0)).join(', ')]
            : []),
          String(list.reduce((sum, run) => sum + run.failures, 0)),
          formatDecimal(median(list.map((run) => run.clientCpuMicrosPerHandshake))),
          bench.reliability.otherLoadCell(
            `${name} ${mode}`,
            Math.max(...list.map((run) => run.otherLoadOnProxyCpuPercent ?? 0)),
          ),
          groupsChosen(list.map((run) => run.groups)) || '—',
        ]);
      }
    }
    const table = formatMarkdownTable(
      [
        'Proxy',
        'Handshake',
        'Handshakes/s',
        'Proxy CPU µs/handshake',
        ...(repeat > 1 ? ['Each run µs'] : []),
        'Failures',
        'Client CPU µs/handshake',
        'Other load on proxy CPU % (max)',
        'Key exchange (chosen)',
      ],
      rows,
    );
    // Closed loop: each proxy at its own rate, so the ratio is labelled as such (equal-load.ts
    // has the ratio at the same offered rate).
    const ratioLines = bench.reliability.ratioLines(
      MODES.flatMap((mode) => {
        const unhitch = medianCpu.get(`unhitch ${mode}`);
        const ratio =
          unhitch === undefined || unhitch === null
            ? null
            : ratioTo(unhitch, medianCpu.get(`hitch ${mode}`));
        return ratio === null
          ? []
          : [
              `saturation ratio unhitch/hitch cpu-per-${mode}-handshake: ${ratio.toFixed(2)} (closed loop, each proxy at its own rate; bench/equal-load gives the comparable ratio)`,
            ];
      }),
    );
    return {
      stdout: `${table}\n${ratioLines.join('\n')}`,
      results: {
        heading: '## handshake: TLS 1.3 full and resumed handshakes',
        notes: [
          `- Layout: proxy on CPU ${proxyCpu}; node:tls client (worker threads) and TCP sink backend on CPU ${loadCpu}; ${warmup} s warm-up, ${duration} s measured. Resumed: a handshake counts only if isSessionReused(); others are failures.`,
          `- Key exchange offered by the client: ${groups === '' ? "node's default list (X25519MLKEM768 first; proxies on OpenSSL 3.0 choose X25519)" : `${groups} only (what Hitch and HAProxy on OpenSSL 3.0 choose anyway: the same work for every proxy; --groups=default offers the hybrid)`}.`,
          `- Runs per row: ${repeat}${repeat > 1 ? ' (proxies take turns; median shown)' : ''}`,
        ],
        blocks: [table, ...ratioLines],
        references: true,
      },
    };
  },
});
