#!/usr/bin/env node
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { connect as connectTcp, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createSecureContext } from 'node:tls';
import { localhostCertificate } from '../test/kit/pki.js';
import { freePort } from '../test/kit/ports.js';
import { processTree, treeCpuMicros } from '../test/kit/proc.js';
import { countSyscalls, type SyscallCount } from '../test/kit/strace.js';
import { installCleanup, stopProcess } from './lib/processes.js';
import { parseProxyList, type RunningProxy, startProxy } from './lib/proxies.js';

const flags = new Map(
  process.argv.slice(2).map((arg) => {
    const [key, value] = arg.replace(/^--/, '').split('=', 2);
    return [key ?? '', value ?? 'true'] as const;
  }),
);
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
  const workDirectory = mkdtempSync(join(tmpdir(), 'conn-syscalls-'));
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
      }),
    );
  }
  const tickets = new Map<string, Buffer | undefined>();
  // Warm up: JIT, the first ticket, lazily loaded code.
  for (const proxy of running)
    tickets.set(proxy.name, await reconnectLoop(proxy.port, 200, undefined));

  const cpu = new Map<string, number[]>();
  for (let round = 0; round < rounds; round++) {
    for (const proxy of running) {
      const rootPid = proxy.process?.pid as number;
      const before = treeCpuMicros(rootPid);
      tickets.set(
        proxy.name,
        await reconnectLoop(proxy.port, connections, tickets.get(proxy.name)),
      );
      const perConnection = (treeCpuMicros(rootPid) - before) / connections;
      cpu.set(proxy.name, [...(cpu.get(proxy.name) ?? []), perConnection]);
    }
  }
  process.stdout.write(
    `# ${connections} sequential ${mode} reconnects, close by ${closeBy}, ${rounds} rounds\n`,
  );
  for (const [name, values] of cpu) {
    const sorted = [...values].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
    process.stdout.write(
      `cpu ${name}: median ${median.toFixed(0)} µs/conn (${values.map((v) => v.toFixed(0)).join(', ')})\n`,
    );
  }

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
