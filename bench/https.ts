#!/usr/bin/env node
/**
 * HTTPS requests/s through each proxy to a trivial node http backend, with autocannon
 * (-c 100, bounded duration), and proxy CPU µs per request.
 *   node dist/bench/https.js [--proxies=none,unhitch,hitch,haproxy] [--duration=10]
 *     [--connections=100] [--quick] [--no-write]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeSelfSignedCertificate } from './lib/cert.js';
import { listFlag, numberFlag, parseFlags } from './lib/cli-args.js';
import { freePort, waitForPort } from './lib/ports.js';
import { cpuBusyMicros, treeCpuMicros } from './lib/proc.js';
import { installCleanup, isShuttingDown, startProcess, untilReady } from './lib/processes.js';
import { parseProxyList, proxyUnavailableReason, REPO_ROOT, startProxy } from './lib/proxies.js';
import { formatResultsSection, updateResultsFile } from './lib/results-file.js';
import { formatDecimal, formatMarkdownTable } from './lib/table.js';

const BACKEND = join(REPO_ROOT, 'dist', 'bench', 'backends', 'http-hello.js');
const RESULTS_MD = join(REPO_ROOT, 'bench', 'RESULTS.md');
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

async function main(): Promise<void> {
  installCleanup();
  const flags = parseFlags(process.argv.slice(2), [
    'proxies',
    'duration',
    'connections',
    'quick',
    'no-write',
    'proxy-cpu',
    'load-cpu',
  ]);
  const quick = flags.has('quick');
  const duration = numberFlag(flags, 'duration', quick ? 4 : 10);
  const connections = numberFlag(flags, 'connections', 100);
  const proxyCpu = flags.get('proxy-cpu') ?? '1';
  const loadCpu = flags.get('load-cpu') ?? '0';
  const proxies = parseProxyList(
    listFlag(flags, 'proxies', ['none', 'unhitch', 'hitch', 'haproxy']).join(','),
  );
  const workDirectory = mkdtempSync(join(tmpdir(), 'unhitch-https-'));
  const rows: string[][] = [];
  const skipped: string[] = [];
  try {
    const certificate = makeSelfSignedCertificate(workDirectory);
    const backendPort = await freePort();
    const backend = startProcess({
      name: 'http-hello',
      command: process.execPath,
      args: [BACKEND, String(backendPort)],
      cpu: loadCpu,
    });
    await untilReady(backend, waitForPort(backendPort));
    let baseline: number | null = null;
    for (const name of proxies) {
      const reason = proxyUnavailableReason(name);
      if (reason) {
        skipped.push(`${name}: ${reason}`);
        continue;
      }
      process.stderr.write(`== ${name}\n`);
      try {
        const proxy = await startProxy(name, {
          frontendPort: await freePort(),
          backendPort,
          combinedPemPath: certificate.combinedPemPath,
          cpu: proxyCpu,
          workDirectory,
        });
        try {
          const pid = proxy.process?.pid ?? null;
          const cpuBefore = pid === null ? null : treeCpuMicros(pid);
          const proxyCpuIndex = /^\d+$/.test(proxyCpu) ? Number(proxyCpu) : null;
          const busyBefore = proxyCpuIndex === null ? null : cpuBusyMicros(proxyCpuIndex);
          const startedAt = performance.now();
          const url = `${proxy.tls ? 'https' : 'http'}://127.0.0.1:${proxy.port}/`;
          const result = await runAutocannon(url, connections, duration, loadCpu);
          const cpuMicros =
            pid === null || cpuBefore === null ? null : treeCpuMicros(pid) - cpuBefore;
          const busyAfter = proxyCpuIndex === null ? null : cpuBusyMicros(proxyCpuIndex);
          const elapsedMicros = (performance.now() - startedAt) * 1000;
          const otherLoadPercent =
            busyBefore !== null && busyAfter !== null && elapsedMicros > 0
              ? Math.max(0, ((busyAfter - busyBefore - (cpuMicros ?? 0)) / elapsedMicros) * 100)
              : null;
          if (name === 'none') baseline = result.requests.average;
          rows.push([
            name,
            Math.round(result.requests.average).toLocaleString('en-US'),
            baseline && name !== 'none'
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
            formatDecimal(otherLoadPercent, 0),
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
    process.stdout.write(`\n${table}\n`);
    if (!flags.has('no-write') && !isShuttingDown()) {
      updateResultsFile(
        RESULTS_MD,
        'https',
        formatResultsSection({
          heading: '## https: autocannon through each proxy to a trivial node http backend',
          notes: [
            `- Layout: proxy on CPU ${proxyCpu}; autocannon (-c ${connections}, ${duration} s, keep-alive) and backend on CPU ${loadCpu}. Proxy CPU covers autocannon's whole run, connection setup included.`,
          ],
          blocks: [table],
          skipped,
        }),
      );
    }
  } finally {
    rmSync(workDirectory, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`https: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
