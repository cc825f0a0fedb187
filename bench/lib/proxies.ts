/**
 * The TLS terminators under test, each started pinned to its own CPU in front of a
 * loopback backend: none (direct), unhitch, hitch, haproxy, and a naive node:tls pipe.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { readAllowedCpus, readThreadAffinities } from '../../src/cluster/affinity.js';
import { freePort, waitForPort } from '../../test/kit/ports.js';
import { processTree } from '../../test/kit/proc.js';
import {
  type BenchProcess,
  commandExists,
  isShuttingDown,
  startProcess,
  untilReady,
} from './processes.js';

export const PROXY_NAMES = [
  'none',
  'unhitch',
  // A/B: unhitch again, from UNHITCH_B_CLI (another build) with UNHITCH_B_NODE_FLAGS.
  'unhitch-b',
  // unhitch with the per-client limits and timers of a public tracker (bench/abuse gives them).
  'unhitch-limits',
  'hitch',
  'haproxy',
  'node-tls',
  // node:tls alone, no backend: the floor under any node:tls terminator (handshake, capacity).
  'node-tls-bare',
  // Experiment: uWS WebSocket relay, backend leg via the ws package / a raw node:net client.
  'uws-relay',
  'uws-relay-raw',
] as const;
export type ProxyName = (typeof PROXY_NAMES)[number];

/** dist/bench/lib → repository root. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const UNHITCH_CLI = join(REPO_ROOT, 'dist', 'src', 'cli.js');
/**
 * The `unhitch-b` proxy, for before/after comparisons measured in one run (PERF-STEPS.md):
 * the CLI of another build (say a clone at the previous commit) and node flags for it.
 */
const UNHITCH_B_CLI = process.env.UNHITCH_B_CLI ?? UNHITCH_CLI;
const UNHITCH_B_NODE_FLAGS = (process.env.UNHITCH_B_NODE_FLAGS ?? '')
  .split(/\s+/)
  .filter((flag) => flag !== '');
/**
 * unhitch, like Hitch, refuses to run workers as root; benches run as root on CI, so the
 * workers serve as nobody there (the primary sends them the certificate).
 */
export const UNHITCH_IDENTITY_FLAGS: readonly string[] =
  process.getuid?.() === 0 ? ['--user=nobody'] : [];
/** unhitch's command line for a bench's own run: loopback frontend and backend, one pem. */
export function unhitchArgs(options: {
  readonly frontendPort: number;
  readonly backendPort: number;
  readonly workers: number;
  readonly logLevel: string;
  readonly pemPath: string;
}): string[] {
  return [
    UNHITCH_CLI,
    ...UNHITCH_IDENTITY_FLAGS,
    `--frontend=[127.0.0.1]:${options.frontendPort}`,
    `--backend=[127.0.0.1]:${options.backendPort}`,
    `--workers=${options.workers}`,
    `--log-level=${options.logLevel}`,
    options.pemPath,
  ];
}
const NODE_TLS_PIPE = join(REPO_ROOT, 'dist', 'bench', 'lib', 'node-tls-pipe.js');
const NODE_TLS_BARE = join(REPO_ROOT, 'dist', 'bench', 'lib', 'node-tls-bare.js');
const UWS_RELAY = join(REPO_ROOT, 'dist', 'bench', 'uws-relay.js');

export interface ProxyStartOptions {
  readonly frontendPort: number;
  readonly backendPort: number;
  readonly combinedPemPath: string;
  /** CPU list for taskset; omitted → not pinned (tests on small CI machines). */
  readonly cpu?: string;
  /** Directory for generated configuration files. */
  readonly workDirectory: string;
  readonly openFilesLimit?: number;
  /** Worker processes (unhitch, Hitch) or threads (HAProxy); default 1. */
  readonly workers?: number;
  /** Keep the proxy's warnings (no --quiet), to count backend errors in its log. */
  readonly verbose?: boolean;
  /**
   * Backend connect timeout, s: unhitch's --backend-connect-timeout, HAProxy's `timeout
   * connect` (default 5). The installed Hitch 1.7.2
   * rejects it (flag and config key) and keeps its built-in timeout.
   */
  readonly connectTimeoutSeconds?: number;
  /** Added to the command line of unhitch, unhitch-b, unhitch-limits and Hitch. */
  readonly extraArgs?: readonly string[];
  /** HAProxy: the global log level (default err) and lines added to its frontend section. */
  readonly haproxy?: { readonly logLevel?: string; readonly frontendLines?: readonly string[] };
}

export interface RunningProxy {
  readonly name: ProxyName;
  /** null for `none`. */
  readonly process: BenchProcess | null;
  /** Where clients connect. */
  readonly port: number;
  readonly tls: boolean;
}

/**
 * Why a proxy cannot run here, or null when it can. `relay`: the run needs bytes to reach
 * the backend; `terminate`: TLS (and the WebSocket upgrade) is all it measures.
 */
export function proxyUnavailableReason(
  name: ProxyName,
  needs: 'relay' | 'terminate' = 'relay',
): string | null {
  switch (name) {
    case 'none':
      return null;
    case 'unhitch':
    case 'unhitch-limits':
      return existsSync(UNHITCH_CLI) ? null : `${UNHITCH_CLI} not built (run npx tsc -p .)`;
    case 'unhitch-b':
      return existsSync(UNHITCH_B_CLI) ? null : `${UNHITCH_B_CLI} (UNHITCH_B_CLI) not built`;
    case 'hitch':
      return commandExists('hitch') ? null : 'hitch not installed (apt-get install hitch)';
    case 'haproxy':
      return commandExists('haproxy') ? null : 'haproxy not installed (apt-get install haproxy)';
    case 'node-tls':
      return existsSync(NODE_TLS_PIPE) ? null : `${NODE_TLS_PIPE} not built`;
    case 'node-tls-bare':
      if (needs === 'relay') return 'has no backend; it is for the handshake and capacity runs';
      return existsSync(NODE_TLS_BARE) ? null : `${NODE_TLS_BARE} not built`;
    case 'uws-relay':
    case 'uws-relay-raw':
      return existsSync(UWS_RELAY) ? null : `${UWS_RELAY} not built`;
  }
}

/**
 * The TLS terminators among `proxies` that can run here (for runs that measure TLS and the
 * upgrade); each other one is noted in `skipped` with its reason, `none` with `noTls`.
 */
export function runnableTerminators(
  proxies: readonly ProxyName[],
  skipped: string[],
  noTls: string,
): ProxyName[] {
  return proxies.filter((name) => {
    const reason = proxyUnavailableReason(name, 'terminate');
    if (name === 'none' || reason) {
      skipped.push(`${name}: ${reason ?? noTls}`);
      return false;
    }
    return true;
  });
}

export function parseProxyList(text: string): ProxyName[] {
  return text
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name !== '')
    .map((name) => {
      if (!(PROXY_NAMES as readonly string[]).includes(name)) {
        throw Object.assign(new Error(`unknown proxy ${name}; known: ${PROXY_NAMES.join(', ')}`), {
          code: 'BENCH_UNKNOWN_PROXY',
        });
      }
      return name as ProxyName;
    });
}

/** HAProxy in plain TCP mode, TLS terminated, one thread pinned to the proxy CPU. */
export function haproxyConfig(options: ProxyStartOptions): string {
  return [
    'global',
    `  nbthread ${options.workers ?? 1}`,
    ...(options.cpu === undefined ? [] : [`  cpu-map 1/all ${options.cpu}`]),
    // HAProxy refuses to start if maxconn needs more descriptors than it may open.
    `  maxconn ${Math.max(256, Math.floor(((options.openFilesLimit ?? 4096) - 200) / 2))}`,
    `  log stderr format raw local0 ${options.haproxy?.logLevel ?? 'err'}`,
    'defaults',
    '  mode tcp',
    `  timeout connect ${options.connectTimeoutSeconds ?? 5}s`,
    '  timeout client 1h',
    '  timeout server 1h',
    'frontend tls_in',
    `  bind 127.0.0.1:${options.frontendPort} ssl crt ${options.combinedPemPath}`,
    ...(options.haproxy?.frontendLines ?? []).map((line) => `  ${line}`),
    '  default_backend tracker',
    'backend tracker',
    `  server s1 127.0.0.1:${options.backendPort}`,
    '',
  ].join('\n');
}

function hitchFlags(options: ProxyStartOptions): string[] {
  return [
    `--frontend=[127.0.0.1]:${options.frontendPort}`,
    `--backend=[127.0.0.1]:${options.backendPort}`,
    `--workers=${options.workers ?? 1}`,
    ...(options.verbose ? [] : ['--quiet']),
    ...(options.extraArgs ?? []),
  ];
}

export async function startProxy(
  name: ProxyName,
  options: ProxyStartOptions,
): Promise<RunningProxy> {
  if (name === 'none') return { name, process: null, port: options.backendPort, tls: false };
  const common = { cpu: options.cpu, openFilesLimit: options.openFilesLimit };
  let handle: BenchProcess;
  switch (name) {
    case 'unhitch':
    case 'unhitch-b':
    case 'unhitch-limits':
      handle = startProcess({
        ...common,
        name,
        command: process.execPath,
        args: [
          ...(name === 'unhitch-b' ? [...UNHITCH_B_NODE_FLAGS, UNHITCH_B_CLI] : [UNHITCH_CLI]),
          ...UNHITCH_IDENTITY_FLAGS,
          ...hitchFlags(options),
          ...(options.connectTimeoutSeconds === undefined
            ? []
            : [`--backend-connect-timeout=${options.connectTimeoutSeconds}`]),
          options.combinedPemPath,
        ],
      });
      break;
    case 'hitch':
      // Hitch refuses to keep root; nobody can still read the PEM because it is read before dropping.
      handle = startProcess({
        ...common,
        name,
        command: 'hitch',
        args: [...hitchFlags(options), '--daemon=off', '--user=nobody', options.combinedPemPath],
      });
      break;
    case 'haproxy': {
      const configPath = join(options.workDirectory, 'haproxy.cfg');
      writeFileSync(configPath, haproxyConfig(options));
      handle = startProcess({
        ...common,
        name,
        command: 'haproxy',
        args: ['-db', '-f', configPath],
      });
      break;
    }
    case 'node-tls':
      handle = startProcess({
        ...common,
        name,
        command: process.execPath,
        args: [
          NODE_TLS_PIPE,
          String(options.frontendPort),
          String(options.backendPort),
          options.combinedPemPath,
        ],
      });
      break;
    case 'node-tls-bare':
      handle = startProcess({
        ...common,
        name,
        command: process.execPath,
        args: [NODE_TLS_BARE, String(options.frontendPort), options.combinedPemPath],
      });
      break;
    case 'uws-relay':
    case 'uws-relay-raw':
      handle = startProcess({
        ...common,
        name,
        command: process.execPath,
        args: [
          UWS_RELAY,
          `--listen=${options.frontendPort}`,
          `--backend=127.0.0.1:${options.backendPort}`,
          `--cert=${options.combinedPemPath}`,
          `--key=${options.combinedPemPath}`,
          `--client=${name === 'uws-relay' ? 'ws' : 'raw'}`,
        ],
      });
      break;
  }
  await untilReady(handle, waitForPort(options.frontendPort, 15_000));
  if (options.cpu !== undefined) {
    const escaped = await keepOnCpu(handle.pid);
    if (escaped > 0)
      process.stderr.write(
        `   ${name}: ${escaped} thread(s) had pinned themselves off CPU ${options.cpu}; moved back\n`,
      );
  }
  return { name, process: handle, port: options.frontendPort, tls: true };
}

/**
 * Hitch pins worker i to CPU i whatever mask it was started in (the taskset bug the public
 * benchmark had to patch out), so its worker would sit on the load generator's CPU and be
 * measured in another layout than every other proxy. Every thread of the proxy's tree is
 * put back on the mask the root was started with (by taskset); a proxy that honours the
 * mask is left alone. Checked twice: Hitch's children pin themselves as they start.
 * Returns how many threads had left the mask.
 */
export async function keepOnCpu(rootPid: number): Promise<number> {
  let allowed: ReadonlySet<number>;
  try {
    allowed = new Set(readAllowedCpus(rootPid));
  } catch {
    return 0; // gone already: nothing to keep anywhere
  }
  const mask = [...allowed].join(',');
  // Narrower is fine (unhitch pins each worker to one CPU inside its mask); outside is not.
  const leftMask = (cpus: readonly number[]): boolean => cpus.some((cpu) => !allowed.has(cpu));
  let escaped = 0;
  for (let round = 0; round < 2; round++) {
    for (const pid of processTree(rootPid)) {
      let threads: Map<number, number[]>;
      try {
        threads = readThreadAffinities(pid);
      } catch {
        continue; // exited meanwhile
      }
      const outside = [...threads.values()].filter(leftMask).length;
      if (outside === 0) continue;
      escaped += outside;
      execFileSync('taskset', ['-a', '-p', '-c', mask, String(pid)], { stdio: 'ignore' });
    }
    await sleep(300);
  }
  return escaped;
}

/**
 * `repeat` rounds in which the proxies take turns (a slow phase of a shared machine then hits
 * them alike): each is started on a fresh port for its turn, measured, and stopped. A proxy
 * that fails is noted in `skipped` and the others go on.
 */
export async function measureInTurns(options: {
  readonly proxies: readonly ProxyName[];
  readonly repeat: number;
  readonly start: Omit<ProxyStartOptions, 'frontendPort'>;
  readonly skipped: string[];
  readonly measure: (proxy: RunningProxy) => Promise<void>;
}): Promise<void> {
  const { proxies, repeat, skipped } = options;
  for (let round = 1; round <= repeat && !isShuttingDown(); round++) {
    for (const name of proxies) {
      process.stderr.write(`== ${name}${repeat > 1 ? ` (run ${round}/${repeat})` : ''}\n`);
      try {
        const proxy = await startProxy(name, { ...options.start, frontendPort: await freePort() });
        try {
          await options.measure(proxy);
        } finally {
          await proxy.process?.stop();
        }
      } catch (err) {
        skipped.push(`${name} (run ${round}): ${(err as Error).message}`);
        process.stderr.write(`failed: ${name}: ${(err as Error).message}\n`);
      }
    }
  }
}
