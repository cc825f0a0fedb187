/**
 * The latency a proxy adds: round trips of small messages through each proxy to an echo
 * backend, against the same client talking to the backend directly (`none`). By default one
 * connection, one message in flight, 1 ms pause between round trips: nothing queues, so the
 * difference is the proxy's own path. More connections (--connections) measure it under load at
 * a fixed rate. Proxy pinned to one CPU; client and echo backend on the other.
 *   node dist/bench/latency.js [--proxies=none,unhitch,hitch,haproxy] [--connections=1]
 *     [--interval-ms=1] [--size=200] [--duration=10] [--warmup=2] [--repeat=3] [--quick]
 *     [--no-write]
 * With --repeat, the proxies take turns round after round and each figure is the median.
 */
import { join } from 'node:path';
import { numberFlag } from '../lib/cli-args.js';
import { runBench } from '../lib/harness.js';
import { runMeasuredChild } from '../lib/measured-child.js';
import { measureInTurns, proxyUnavailableReason, REPO_ROOT } from '../lib/proxies.js';
import { formatCount, formatDecimal, formatMarkdownTable, median } from '../lib/table.js';

const CLIENT = join(REPO_ROOT, 'dist', 'bench', 'lib', 'latency-client.js');

interface LatencyResult {
  readonly connections: number;
  readonly roundTrips: number;
  readonly failures: number;
  readonly p50Micros: number;
  readonly p90Micros: number;
  readonly p99Micros: number;
  readonly p999Micros: number;
  readonly maxMicros: number;
}

interface LatencyRun extends LatencyResult {
  readonly proxyCpuMicrosPerRoundTrip: number | null;
  readonly otherLoadOnProxyCpuPercent: number | null;
}

runBench({
  name: 'latency',
  flags: [
    'proxies',
    'connections',
    'interval-ms',
    'size',
    'duration',
    'warmup',
    'repeat',
    'quick',
    'no-write',
    'proxy-cpu',
    'load-cpu',
  ],
  defaultProxies: ['none', 'unhitch', 'hitch', 'haproxy'],
  run: async (bench) => {
    const { flags, quick, proxyCpu, loadCpu, repeat, skipped } = bench;
    const duration = numberFlag(flags, 'duration', quick ? 4 : 10);
    const warmup = numberFlag(flags, 'warmup', quick ? 1 : 2);
    const connections = numberFlag(flags, 'connections', 1);
    const intervalMs = numberFlag(flags, 'interval-ms', 1);
    const size = numberFlag(flags, 'size', 200);
    // More than one connection is a run under load: its own RESULTS.md section, so the idle
    // single-connection figure stays beside it instead of being overwritten.
    const underLoad = connections > 1;
    const totalRate = (connections * 1000) / intervalMs;
    const runs = new Map<string, LatencyRun[]>();
    const certificate = bench.certificate();
    const echo = await bench.startBackend('tcp-echo');
    const runnable = bench.proxies.filter((name) => {
      const reason = proxyUnavailableReason(name);
      if (reason) skipped.push(`${name}: ${reason}`);
      return reason === null;
    });
    await measureInTurns({
      proxies: runnable,
      repeat,
      start: {
        backendPort: echo.port,
        combinedPemPath: certificate.combinedPemPath,
        cpu: proxyCpu,
        workDirectory: bench.workDirectory,
      },
      skipped,
      measure: async (proxy) => {
        const name = proxy.name;
        const measured = await runMeasuredChild<LatencyResult>({
          name: 'latency-client',
          command: process.execPath,
          args: [
            CLIENT,
            `--port=${proxy.port}`,
            ...(proxy.tls ? ['--tls'] : []),
            `--connections=${connections}`,
            `--interval-ms=${intervalMs}`,
            `--size=${size}`,
            `--warmup=${warmup}`,
            `--duration=${duration}`,
          ],
          cpu: loadCpu,
          proxyPid: proxy.process?.pid ?? null,
          proxyCpus: bench.proxyCpus,
        });
        const r = measured.result;
        const run: LatencyRun = {
          ...r,
          proxyCpuMicrosPerRoundTrip:
            measured.proxyCpuMicros !== null && r.roundTrips > 0
              ? measured.proxyCpuMicros / r.roundTrips
              : null,
          otherLoadOnProxyCpuPercent: measured.otherLoadOnProxyCpuPercent,
        };
        const list = runs.get(name) ?? [];
        list.push(run);
        runs.set(name, list);
        process.stderr.write(
          `   ${name} | ${r.roundTrips} round trips | p50 ${formatDecimal(r.p50Micros)} µs | p99 ${formatDecimal(r.p99Micros)} µs | failures ${r.failures}\n`,
        );
      },
    });
    await echo.stop();

    const med = (name: string, pick: (run: LatencyRun) => number | null): number | null =>
      median((runs.get(name) ?? []).map(pick));
    const added = (name: string, pick: (run: LatencyRun) => number): number | null => {
      const own = med(name, pick);
      const direct = med('none', pick);
      return name === 'none' || own === null || direct === null ? null : own - direct;
    };
    const rows = runnable
      .filter((name) => runs.has(name))
      .map((name) => [
        name,
        Math.round(med(name, (r) => r.roundTrips) ?? 0).toLocaleString('en-US'),
        formatDecimal(med(name, (r) => r.p50Micros)),
        formatDecimal(med(name, (r) => r.p90Micros)),
        formatDecimal(med(name, (r) => r.p99Micros)),
        formatDecimal(med(name, (r) => r.p999Micros)),
        formatDecimal(med(name, (r) => r.maxMicros)),
        formatDecimal(added(name, (r) => r.p50Micros)),
        formatDecimal(added(name, (r) => r.p99Micros)),
        formatDecimal(added(name, (r) => r.p999Micros)),
        formatDecimal(med(name, (r) => r.proxyCpuMicrosPerRoundTrip)),
        String((runs.get(name) ?? []).reduce((sum, r) => sum + r.failures, 0)),
        bench.reliability.otherLoadCell(
          name,
          Math.max(...(runs.get(name) ?? []).map((r) => r.otherLoadOnProxyCpuPercent ?? 0)),
        ),
      ]);
    const table = formatMarkdownTable(
      [
        'Proxy',
        'Round trips',
        'p50 µs',
        'p90 µs',
        'p99 µs',
        'p99.9 µs',
        'max µs',
        'Added p50 µs',
        'Added p99 µs',
        'Added p99.9 µs',
        'Proxy CPU µs/round trip',
        'Failures',
        'Other load on proxy CPU % (max)',
      ],
      rows,
    );
    return {
      stdout: table,
      results: {
        heading: underLoad
          ? `## latency-under-load: added round-trip time with ${connections} connections at ${formatCount(totalRate)} round trips/s`
          : '## latency: one idle connection (an idle CPU waking up plus the proxy path, not load)',
        notes: [
          `- Layout: proxy on CPU ${proxyCpu}; client and echo backend on CPU ${loadCpu}. ${connections} connections, each sending ${size} bytes every ${intervalMs} ms and timing the echo (one in flight per connection); ${warmup} s warm-up, ${duration} s measured. "Added" is the median minus the direct (none) median.`,
          `- Runs per row: ${repeat}${repeat > 1 ? ' (proxies take turns; median of each figure)' : ''}`,
        ],
        blocks: [
          underLoad
            ? `Every proxy gets the same offered rate (${connections} connections × one round trip every ${intervalMs} ms); the percentiles are of each round trip's time, "Added" against the same client talking to the echo backend directly.`
            : 'One connection pausing 1 ms between round trips: each message finds the proxy (and the client) asleep, so the p50 mostly measures waking an idle CPU, alike for every proxy. `--connections=1020 --interval-ms=…` measures under load (the latency-under-load section).',
          table,
        ],
      },
      section: underLoad ? 'latency-under-load' : 'latency',
    };
  },
});
