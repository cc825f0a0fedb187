/**
 * How many idle TLS+WebSocket connections each proxy holds (up to --target), and its KiB per
 * connection (RSS of the proxy tree holding them minus idle RSS, / connections).
 * Children get a raised open-files limit through prlimit (root may raise the hard limit; others
 * are capped by `ulimit -Hn`, and the target is lowered to fit).
 *   node dist/bench/capacity.js [--proxies=unhitch,hitch,haproxy] [--target=10000] [--quick] [--no-write]
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { freePort } from '../../test/kit/ports.js';
import { treeRssKiB } from '../../test/kit/proc.js';
import { builtinBackend, startBackend } from '../lib/backends.js';
import { numberFlag } from '../lib/cli-args.js';
import { runBench } from '../lib/harness.js';
import { runMeasuredChild } from '../lib/measured-child.js';
import { hardOpenFilesLimit, maxProxiedConnections } from '../lib/open-files.js';
import { proxyUnavailableReason, REPO_ROOT, startProxy } from '../lib/proxies.js';
import { formatDecimal, formatMarkdownTable } from '../lib/table.js';

const CLIENT = join(REPO_ROOT, 'dist', 'bench', 'lib', 'idle-client.js');
/** Descriptors beyond the connections themselves (listeners, logs, node internals). */
const SPARE_FILES = 1024;

interface IdleResult {
  readonly target: number;
  readonly open: number;
  readonly failures: number;
  readonly firstError: string;
}

/** Whether prlimit may give a child `limit` open files (root without CAP_SYS_RESOURCE may not). */
function canRaiseOpenFiles(limit: number): boolean {
  try {
    execFileSync('prlimit', [`--nofile=${limit}:${limit}`, '--', 'true'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** The target that fits: the proxy needs two descriptors per connection (client + backend). */
export function fittingTarget(requested: number, hardLimit: number, canRaise: boolean): number {
  if (canRaise) return requested;
  return Math.min(requested, maxProxiedConnections(hardLimit, SPARE_FILES));
}

runBench({
  name: 'capacity',
  flags: ['proxies', 'target', 'quick', 'no-write', 'proxy-cpu', 'load-cpu', 'parallel'],
  defaultProxies: ['unhitch', 'hitch', 'haproxy'],
  run: async (bench) => {
    const { flags, quick, proxyCpu, loadCpu, skipped } = bench;
    const requested = numberFlag(flags, 'target', quick ? 2000 : 10_000);
    const target = fittingTarget(
      requested,
      hardOpenFilesLimit(),
      canRaiseOpenFiles(requested * 2 + SPARE_FILES),
    );
    if (target < requested) {
      process.stderr.write(
        `target lowered to ${target}: the open-files hard limit is ${hardOpenFilesLimit()} and cannot be raised here\n`,
      );
    }
    const openFilesLimit = target * 2 + SPARE_FILES;
    const rows: string[][] = [];
    const certificate = bench.certificate();
    for (const name of bench.proxies) {
      const reason = proxyUnavailableReason(name, 'terminate');
      if (reason) {
        skipped.push(`${name}: ${reason}`);
        continue;
      }
      process.stderr.write(`== ${name}\n`);
      let backend: Awaited<ReturnType<typeof startBackend>> | null = null;
      try {
        backend = await startBackend(builtinBackend('uws'), loadCpu, openFilesLimit);
        const proxy = await startProxy(name, {
          frontendPort: await freePort(),
          backendPort: backend.port,
          combinedPemPath: certificate.combinedPemPath,
          cpu: proxyCpu,
          workDirectory: bench.workDirectory,
          openFilesLimit,
        });
        try {
          await new Promise((r) => setTimeout(r, 500));
          const pid = proxy.process?.pid ?? null;
          const idleRss = pid === null ? 0 : treeRssKiB(pid);
          const measured = await runMeasuredChild<IdleResult>({
            name: 'idle-client',
            command: process.execPath,
            args: [
              CLIENT,
              `--url=${proxy.tls ? 'wss' : 'ws'}://127.0.0.1:${proxy.port}`,
              `--target=${target}`,
              `--parallel=${numberFlag(flags, 'parallel', 200)}`,
            ],
            cpu: loadCpu,
            openFilesLimit,
            proxyPid: pid,
            onHolding: async (child) => {
              child.child.kill('SIGTERM');
            },
          });
          const r = measured.result;
          const held = measured.proxyRssKiB;
          rows.push([
            name,
            `${r.open.toLocaleString('en-US')} / ${r.target.toLocaleString('en-US')}`,
            formatDecimal(held !== null && r.open > 0 ? (held - idleRss) / r.open : null),
            `${idleRss.toLocaleString('en-US')} → ${(held ?? 0).toLocaleString('en-US')}`,
            r.failures > 0 ? `${r.failures} (${r.firstError})` : '0',
          ]);
          process.stderr.write(`   ${rows[rows.length - 1]?.join(' | ')}\n`);
        } finally {
          await proxy.process?.stop();
        }
      } catch (err) {
        skipped.push(`${name}: ${(err as Error).message}`);
        process.stderr.write(`failed: ${name}: ${(err as Error).message}\n`);
      } finally {
        await backend?.process.stop();
      }
    }
    const table = formatMarkdownTable(
      [
        'Proxy',
        'Connections held / target',
        'Proxy KiB/conn',
        'Proxy RSS idle → holding KiB',
        'Failures',
      ],
      rows,
    );
    return {
      stdout: table,
      results: {
        heading: '## capacity: idle TLS + WebSocket connections',
        notes: [
          `- Layout: proxy on CPU ${proxyCpu}; idle ws client and uws backend on CPU ${loadCpu}; children run with RLIMIT_NOFILE ${openFilesLimit} (prlimit).${target < requested ? ` Requested ${requested} connections, lowered to ${target}: the open-files hard limit could not be raised (no CAP_SYS_RESOURCE).` : ''}`,
        ],
        blocks: [table],
        references: true,
      },
    };
  },
});
