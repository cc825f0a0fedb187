#!/usr/bin/env node
/**
 * Full and resumed TLS 1.3 handshakes/s and proxy CPU µs per handshake, per proxy.
 * Proxy pinned to one CPU; node:tls client (worker threads) and a TCP sink backend on the other.
 *   node dist/bench/handshake.js [--proxies=unhitch,hitch,haproxy] [--duration=10] [--warmup=2]
 *     [--concurrency=16] [--workers=2] [--quick] [--no-write]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeSelfSignedCertificate } from './lib/cert.js';
import { commandLine, listFlag, numberFlag, parseFlags } from './lib/cli-args.js';
import { machineDescription } from './lib/machine.js';
import { runMeasuredChild } from './lib/measured-child.js';
import { freePort, waitForPort } from './lib/ports.js';
import { installCleanup, isShuttingDown, startProcess, untilReady } from './lib/processes.js';
import { parseProxyList, proxyUnavailableReason, REPO_ROOT, startProxy } from './lib/proxies.js';
import { REFERENCE_NOTES } from './lib/references.js';
import { updateResultsFile } from './lib/results-file.js';
import { formatDecimal, formatMarkdownTable } from './lib/table.js';

const CLIENT = join(REPO_ROOT, 'dist', 'bench', 'lib', 'handshake-client.js');
const SINK = join(REPO_ROOT, 'dist', 'bench', 'backends', 'tcp-sink.js');
const RESULTS_MD = join(REPO_ROOT, 'bench', 'RESULTS.md');

interface HandshakeResult {
  readonly mode: string;
  readonly handshakesPerSecond: number;
  readonly handshakes: number;
  readonly failures: number;
  readonly clientCpuMicrosPerHandshake: number | null;
}

async function main(): Promise<void> {
  installCleanup();
  const flags = parseFlags(process.argv.slice(2), [
    'proxies',
    'duration',
    'warmup',
    'concurrency',
    'workers',
    'quick',
    'no-write',
    'proxy-cpu',
    'load-cpu',
  ]);
  const quick = flags.has('quick');
  const duration = numberFlag(flags, 'duration', quick ? 4 : 10);
  const warmup = numberFlag(flags, 'warmup', quick ? 1 : 2);
  const proxyCpu = flags.get('proxy-cpu') ?? '1';
  const loadCpu = flags.get('load-cpu') ?? '0';
  const proxies = parseProxyList(
    listFlag(flags, 'proxies', ['unhitch', 'hitch', 'haproxy']).join(','),
  );
  const workDirectory = mkdtempSync(join(tmpdir(), 'unhitch-handshake-'));
  const rows: string[][] = [];
  const skipped: string[] = [];
  try {
    const certificate = makeSelfSignedCertificate(workDirectory);
    const sinkPort = await freePort();
    const sink = startProcess({
      name: 'tcp-sink',
      command: process.execPath,
      args: [SINK, String(sinkPort)],
      cpu: loadCpu,
    });
    await untilReady(sink, waitForPort(sinkPort));
    for (const name of proxies) {
      const reason = proxyUnavailableReason(name, 'terminate');
      if (name === 'none' || reason) {
        skipped.push(`${name}: ${reason ?? 'handshakes need a TLS proxy'}`);
        continue;
      }
      process.stderr.write(`== ${name}\n`);
      try {
        const proxy = await startProxy(name, {
          frontendPort: await freePort(),
          backendPort: sinkPort,
          combinedPemPath: certificate.combinedPemPath,
          cpu: proxyCpu,
          workDirectory,
        });
        try {
          for (const mode of ['full', 'resumed'] as const) {
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
              ],
              cpu: loadCpu,
              proxyPid: proxy.process?.pid ?? null,
              proxyCpuIndex: /^\d+$/.test(proxyCpu) ? Number(proxyCpu) : null,
            });
            const r = measured.result;
            rows.push([
              name,
              mode,
              Math.round(r.handshakesPerSecond).toLocaleString('en-US'),
              formatDecimal(
                measured.proxyCpuMicros !== null && r.handshakes > 0
                  ? measured.proxyCpuMicros / r.handshakes
                  : null,
              ),
              String(r.failures),
              formatDecimal(r.clientCpuMicrosPerHandshake),
              formatDecimal(measured.otherLoadOnProxyCpuPercent, 0),
            ]);
            process.stderr.write(`   ${rows[rows.length - 1]?.join(' | ')}\n`);
          }
        } finally {
          await proxy.process?.stop();
        }
      } catch (err) {
        skipped.push(`${name}: ${(err as Error).message}`);
        process.stderr.write(`failed: ${name}: ${(err as Error).message}\n`);
      }
    }
    await sink.stop();
    const table = formatMarkdownTable(
      [
        'Proxy',
        'Handshake',
        'Handshakes/s',
        'Proxy CPU µs/handshake',
        'Failures',
        'Client CPU µs/handshake',
        'Other load on proxy CPU %',
      ],
      rows,
    );
    process.stdout.write(`\n${table}\n`);
    if (!flags.has('no-write') && !isShuttingDown()) {
      updateResultsFile(
        RESULTS_MD,
        'handshake',
        [
          '## handshake: TLS 1.3 full and resumed handshakes',
          '',
          `Command: \`${commandLine()}\``,
          '',
          ...machineDescription(),
          `- Layout: proxy on CPU ${proxyCpu}; node:tls client (worker threads) and TCP sink backend on CPU ${loadCpu}; ${warmup} s warm-up, ${duration} s measured. Resumed: a handshake counts only if isSessionReused(); others are failures.`,
          '',
          table,
          '',
          ...(skipped.length > 0 ? ['Skipped:', ...skipped.map((s) => `- ${s}`), ''] : []),
          REFERENCE_NOTES,
        ].join('\n'),
      );
    }
  } finally {
    rmSync(workDirectory, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`handshake: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
