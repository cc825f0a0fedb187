/**
 * HTTPS requests/s through each proxy to a trivial node http backend, with autocannon
 * (-c 100, bounded duration), and proxy CPU µs per request.
 *   node dist/bench/https.js [--proxies=none,unhitch,hitch,haproxy] [--duration=10]
 *     [--connections=100] [--quick] [--no-write]
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { freePort } from '../../test/kit/ports.js';
import { numberFlag } from '../lib/cli-args.js';
import { measureWindow, runBench } from '../lib/harness.js';
import { startProcess } from '../lib/processes.js';
import { proxyUnavailableReason, startProxy } from '../lib/proxies.js';
import { formatDecimal, formatMarkdownTable } from '../lib/table.js';

const AUTOCANNON = join(
  createRequire(import.meta.url).resolve('autocannon/package.json'),
  '..',
  'autocannon.js',
);

interface AutocannonJson {
  readonly requests: { readonly average: number; readonly total: number };
  readonly errors: number;
  readonly timeouts: number;
  readonly non2xx: number;
  readonly duration: number;
}

async function runAutocannon(
  url: string,
  connections: number,
  seconds: number,
  cpu: string,
): Promise<AutocannonJson> {
  let output = '';
  const child = startProcess({
    name: 'autocannon',
    command: process.execPath,
    args: [AUTOCANNON, '-c', String(connections), '-d', String(seconds), '-j', url],
    cpu,
    onStdoutLine: (line) => {
      output += line;
    },
  });
  const status = await child.exited;
  try {
    return JSON.parse(output) as AutocannonJson;
  } catch {
    throw Object.assign(
      new Error(`autocannon exited (${status}) without JSON: ${child.stderrTail()}`),
      {
        code: 'BENCH_AUTOCANNON_FAILED',
      },
    );
  }
}

runBench({
  name: 'https',
  flags: ['proxies', 'duration', 'connections', 'quick', 'no-write', 'proxy-cpu', 'load-cpu'],
  defaultProxies: ['none', 'unhitch', 'hitch', 'haproxy'],
  run: async (bench) => {
    const duration = numberFlag(bench.flags, 'duration', bench.quick ? 4 : 10);
    const connections = numberFlag(bench.flags, 'connections', 100);
    const { proxyCpu, loadCpu, skipped } = bench;
    const rows: string[][] = [];
    const certificate = bench.certificate();
    const backend = await bench.startBackend('http-hello');
    let baseline: number | null = null;
    for (const name of bench.proxies) {
      const reason = proxyUnavailableReason(name);
      if (reason) {
        skipped.push(`${name}: ${reason}`);
        continue;
      }
      process.stderr.write(`== ${name}\n`);
      try {
        const proxy = await startProxy(name, {
          frontendPort: await freePort(),
          backendPort: backend.port,
          combinedPemPath: certificate.combinedPemPath,
          cpu: proxyCpu,
          workDirectory: bench.workDirectory,
        });
        try {
          const url = `${proxy.tls ? 'https' : 'http'}://127.0.0.1:${proxy.port}/`;
          const measured = await measureWindow(proxy.process?.pid ?? null, bench.proxyCpus, () =>
            runAutocannon(url, connections, duration, loadCpu),
          );
          const { result, proxyCpuMicros: cpuMicros } = measured;
          if (name === 'none') baseline = result.requests.average;
          const otherLoad = bench.reliability.otherLoadCell(
            name,
            measured.otherLoadOnProxyCpuPercent,
          );
          rows.push([
            name,
            Math.round(result.requests.average).toLocaleString('en-US'),
            bench.reliability.unreliable
              ? '–'
              : baseline && name !== 'none'
                ? `${((result.requests.average / baseline) * 100).toFixed(1)} %`
                : name === 'none'
                  ? '100.0 %'
                  : '–',
            formatDecimal(
              cpuMicros !== null && result.requests.total > 0
                ? cpuMicros / result.requests.total
                : null,
            ),
            String(result.errors + result.timeouts + result.non2xx),
            otherLoad,
          ]);
          process.stderr.write(`   ${rows[rows.length - 1]?.join(' | ')}\n`);
        } finally {
          await proxy.process?.stop();
        }
      } catch (err) {
        skipped.push(`${name}: ${(err as Error).message}`);
        process.stderr.write(`failed: ${name}: ${(err as Error).message}\n`);
      }
    }
    await backend.stop();
    // "vs no proxy" is a ratio: none from an unreliable run (lib/reliability.ts).
    if (bench.reliability.unreliable) for (const row of rows) row[2] = '–';
    const table = formatMarkdownTable(
      [
        'Proxy',
        'Requests/s',
        'vs no proxy',
        'Proxy CPU µs/request',
        'Errors',
        'Other load on proxy CPU %',
      ],
      rows,
    );
    return {
      stdout: table,
      results: {
        heading: '## https: autocannon through each proxy to a trivial node http backend',
        notes: [
          `- Layout: proxy on CPU ${proxyCpu}; autocannon (-c ${connections}, ${duration} s, keep-alive) and backend on CPU ${loadCpu}. Proxy CPU covers autocannon's whole run, connection setup included.`,
        ],
        blocks: [table],
      },
    };
  },
});
