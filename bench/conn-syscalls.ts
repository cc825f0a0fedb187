#!/usr/bin/env node
/**
 * System calls and CPU per reconnect, by proxy: N sequential reconnects (one byte each way
 * through an echo backend, one worker), counted by `strace -c -f` on the proxy's tree (exact;
 * needs root) and timed in interleaved rounds. Prints only; writes no file.
 *
 *   node dist/bench/conn-syscalls.js [--proxies=unhitch,node-tls] [--n=500] [--rounds=3]
 *     [--mode=resumed|full] [--close=end|destroy|reset] [--top=25] [--no-strace]
 *     [--proxy-cpu=1] [--load-cpu=0]
 *
 * The proxy runs on --proxy-cpu, this process (clients and backend) on --load-cpu; a round in
 * which other processes took more than 10 % of the proxy CPU is marked UNRELIABLE, as in
 * the harness benches, and said on stderr.
 */
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect as connectTcp, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createSecureContext } from 'node:tls';
import { localhostCertificate } from '../test/kit/pki.js';
import { freePort } from '../test/kit/ports.js';
import { processTree } from '../test/kit/proc.js';
import { countSyscalls, type SyscallCount } from '../test/kit/strace.js';
import { parseFlags } from './lib/cli-args.js';
import { measureWindow } from './lib/harness.js';
import { installCleanup, stopProcess } from './lib/processes.js';
import { parseProxyList, type RunningProxy, startProxy } from './lib/proxies.js';
import { Reliability } from './lib/reliability.js';

const FLAGS = [
  'proxies',
  'n',
  'rounds',
  'mode',
  'close',
  'top',
  'no-strace',
  'proxy-cpu',
  'load-cpu',
];
const flags = (() => {
  try {
    return parseFlags(process.argv.slice(2), FLAGS);
  } catch (error) {
    process.stderr.write(`conn-syscalls: ${(error as Error).message}\n`);
    process.exit(1);
  }
})();
const proxyCpu = flags.get('proxy-cpu') ?? '1';
const loadCpu = flags.get('load-cpu') ?? '0';
const proxies = parseProxyList(flags.get('proxies') ?? 'unhitch,node-tls');
const connections = Number(flags.get('n') ?? 500);
const rounds = Number(flags.get('rounds') ?? 3);
const mode = flags.get('mode') === 'full' ? 'full' : 'resumed';
/** end: close_notify + FIN; destroy: FIN alone (close(2)); reset: RST. */
const closeBy =
  (['end', 'destroy', 'reset'] as const).find((how) => how === flags.get('close')) ?? 'end';
const withStrace = flags.get('no-strace') === undefined;
const top = Number(flags.get('top') ?? 25);
/** Per connection, bounded: a proxy that stops answering fails the run instead of hanging it. */
const CONNECTION_TIMEOUT_MS = 5_000;

const clientContext = createSecureContext({ minVersion: 'TLSv1.3' });

/** One reconnect: handshake (offering `session`), one byte there and back, close. */
function reconnect(port: number, session: Buffer | undefined): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    let ticket: Buffer | undefined;
    const raw = connectTcp({ host: '127.0.0.1', port });
    const socket = connect({
      socket: raw,
      secureContext: clientContext,
      rejectUnauthorized: false,
      ...(session === undefined ? {} : { session }),
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('connection timed out'));
    }, CONNECTION_TIMEOUT_MS);
    socket.on('session', (received: Buffer) => {
      ticket = received;
    });
    socket.once('secureConnect', () => {
      if (session !== undefined && !socket.isSessionReused())
        reject(new Error('session not resumed'));
      socket.write('x');
    });
    socket.once('data', () => {
      if (closeBy === 'reset') raw.resetAndDestroy();
      else if (closeBy === 'destroy') socket.destroy();
      else socket.end();
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(ticket ?? session);
    });
  });
}

/** `count` sequential reconnects; the first also fetches the ticket the others resume with. */
async function reconnectLoop(port: number, count: number, ticket: Buffer | undefined) {
  let session = ticket;
  for (let index = 0; index < count; index++) {
    const next = await reconnect(port, mode === 'resumed' ? session : undefined);
    session = next ?? session;
  }
  return session;
}

function echoBackend(): Promise<Server> {
  const server = createServer({ allowHalfOpen: false }, (socket) => {
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  server.listen(0, '127.0.0.1');
  return once(server, 'listening').then(() => server);
}

function printTable(tables: Map<string, Map<string, SyscallCount>>): void {
  const names = new Set<string>();
  for (const table of tables.values()) for (const name of table.keys()) names.add(name);
  const total = (name: string): number =>
    [...tables.values()].reduce((sum, table) => sum + (table.get(name)?.calls ?? 0), 0);
  const rows = [...names].sort((a, b) => total(b) - total(a)).slice(0, top);
  const header = ['syscall / conn', ...tables.keys()];
  process.stdout.write(`\n| ${header.join(' | ')} |\n|${header.map(() => '---').join('|')}|\n`);
  const cell = (entry: SyscallCount | undefined): string =>
    entry === undefined
      ? '–'
      : `${(entry.calls / connections).toFixed(2)}${entry.errors > 0 ? ` (${(entry.errors / connections).toFixed(2)} err)` : ''}`;
  for (const name of rows)
    process.stdout.write(
      `| ${name} | ${[...tables.values()].map((table) => cell(table.get(name))).join(' | ')} |\n`,
    );
  const sums = [...tables.values()].map((table) =>
    ([...table.values()].reduce((sum, entry) => sum + entry.calls, 0) / connections).toFixed(1),
  );
  process.stdout.write(`| **all** | ${sums.join(' | ')} |\n`);
}

async function main(): Promise<void> {
  installCleanup();
  // Clients and backend off the proxy CPU, so what else runs there is other load.
  execFileSync('taskset', ['-a', '-p', '-c', loadCpu, String(process.pid)], { stdio: 'ignore' });
  const workDirectory = mkdtempSync(join(tmpdir(), 'conn-syscalls-'));
  process.on('exit', () => rmSync(workDirectory, { recursive: true, force: true }));
  const certificate = localhostCertificate();
  const backend = await echoBackend();
  const backendAddress = backend.address();
  if (backendAddress === null || typeof backendAddress === 'string') throw new Error('backend');
  const running: RunningProxy[] = [];
  for (const name of proxies) {
    running.push(
      await startProxy(name, {
        frontendPort: await freePort(),
        backendPort: backendAddress.port,
        combinedPemPath: certificate.combinedPath,
        workDirectory,
        workers: 1,
        cpu: proxyCpu,
      }),
    );
  }
  const tickets = new Map<string, Buffer | undefined>();
  // Warm up: JIT, the first ticket, lazily loaded code.
  for (const proxy of running)
    tickets.set(proxy.name, await reconnectLoop(proxy.port, 200, undefined));

  const cpu = new Map<string, number[]>();
  const otherLoad = new Map<string, number>();
  const proxyCpuIndex = /^\d+$/.test(proxyCpu) ? Number(proxyCpu) : null;
  for (let round = 0; round < rounds; round++) {
    for (const proxy of running) {
      const measured = await measureWindow(proxy.process?.pid ?? null, proxyCpuIndex, () =>
        reconnectLoop(proxy.port, connections, tickets.get(proxy.name)),
      );
      tickets.set(proxy.name, measured.result);
      const perConnection = (measured.proxyCpuMicros ?? 0) / connections;
      cpu.set(proxy.name, [...(cpu.get(proxy.name) ?? []), perConnection]);
      const other = measured.otherLoadOnProxyCpuPercent;
      if (other !== null)
        otherLoad.set(proxy.name, Math.max(otherLoad.get(proxy.name) ?? 0, other));
    }
  }
  process.stdout.write(
    `# ${connections} sequential ${mode} reconnects, close by ${closeBy}, ${rounds} rounds, proxy on CPU ${proxyCpu}\n`,
  );
  const reliability = new Reliability();
  for (const [name, values] of cpu) {
    const sorted = [...values].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
    const other = reliability.otherLoadCell(name, otherLoad.get(name));
    process.stdout.write(
      `cpu ${name}: median ${median.toFixed(0)} µs/conn (${values.map((v) => v.toFixed(0)).join(', ')}); other load on proxy CPU %: ${other}\n`,
    );
  }
  const unreliable = reliability.summary();
  if (unreliable !== null) process.stderr.write(`conn-syscalls: ${unreliable}\n`);

  if (withStrace) {
    const tables = new Map<string, Map<string, SyscallCount>>();
    for (const proxy of running) {
      const { counts } = await countSyscalls(processTree(proxy.process?.pid as number), () =>
        reconnectLoop(proxy.port, connections, tickets.get(proxy.name)),
      );
      tables.set(proxy.name, counts);
    }
    printTable(tables);
  }
  for (const proxy of running) if (proxy.process) await stopProcess(proxy.process);
  backend.close();
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
