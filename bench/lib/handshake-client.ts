#!/usr/bin/env node
import { connect as connectTcp } from 'node:net';
import { connect, createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
/**
 * TLS 1.3 handshake load: worker threads each keep `concurrency` connect→handshake→close loops
 * running. `--mode=resumed` offers the latest session ticket and counts a handshake only if
 * isSessionReused() confirms it; non-resumed ones are failures. With --rate=N (open loop) the
 * workers instead start N handshakes per second between them on a fixed schedule, whatever the
 * proxy's pace, at most `concurrency` in flight per worker; a handshake due while that many are
 * in flight is counted as missed, not started later (every proxy gets the same offered rate).
 *   node handshake-client.js --port=P --mode=full|resumed [--workers=2] [--concurrency=16]
 *     [--rate=0] [--warmup=2] [--duration=10] [--groups=X25519]
 * --groups: the key-exchange groups offered, OpenSSL's colon list (default: node's own, which
 * on OpenSSL 3.5 puts the X25519MLKEM768 hybrid first); the result counts the groups the
 * server chose. Prints JSON events measure_start / measure_end / result on stdout.
 */
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { UNNAMED_GROUP } from './groups.js';

interface ClientSettings {
  readonly port: number;
  readonly mode: 'full' | 'resumed';
  readonly concurrency: number;
  /** This worker's handshakes per second in open loop; 0: closed loop. */
  readonly rate: number;
  /** Key-exchange groups offered ('' = node's default list). */
  readonly groups: string;
}

interface Tally {
  handshakes: number;
  failures: number;
  /** Open loop: due while `concurrency` handshakes were in flight, so not started. */
  missed: number;
  /** Handshakes by the key-exchange group the server chose. */
  groups: Record<string, number>;
}

const PACER_TICK_MS = 5;

/** After the handshake, wait this long at most for the server's ticket before closing. */
const TICKET_WAIT_MS = 20;
const CONNECT_TIMEOUT_MS = 5000;
/** One context for all connections: building one per connect (the default) costs the client
 * more than the handshake itself. Made on first use, with the settings' groups. */
let sharedContext: SecureContext | undefined;

function contextFor(settings: ClientSettings): SecureContext {
  sharedContext ??= createSecureContext({
    minVersion: 'TLSv1.3',
    ...(settings.groups === '' ? {} : { ecdhCurve: settings.groups }),
  });
  return sharedContext;
}

/** The key-exchange group the server chose (UNNAMED_GROUP where node cannot name it). */
function groupName(socket: TLSSocket): string | undefined {
  const keyInfo = socket.getEphemeralKeyInfo();
  if (keyInfo === null) return undefined;
  return 'name' in keyInfo && typeof keyInfo.name === 'string' ? keyInfo.name : UNNAMED_GROUP;
}

function oneHandshake(
  settings: ClientSettings,
  session: Buffer | undefined,
): Promise<{
  ok: boolean;
  ticket: Buffer | undefined;
  group: string | undefined;
}> {
  return new Promise((resolve) => {
    let ticket: Buffer | undefined;
    let group: string | undefined;
    let settled = false;
    const socket: TLSSocket = connect({
      // Nagle + delayed ACK would stall each flight by ~40 ms and measure latency, not CPU.
      socket: connectTcp({ host: '127.0.0.1', port: settings.port, noDelay: true }),
      servername: 'localhost',
      rejectUnauthorized: false,
      secureContext: contextFor(settings),
      session,
    });
    const finish = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timeout);
      socket.destroy();
      resolve({ ok, ticket, group });
    };
    const timeout = setTimeout(() => finish(false), CONNECT_TIMEOUT_MS);
    socket.on('session', (data: Buffer) => {
      ticket = data;
    });
    socket.once('secureConnect', () => {
      group = groupName(socket);
      const ok = settings.mode === 'full' || socket.isSessionReused();
      // The ticket arrives just after the handshake; keep it for the next resumption.
      if (ticket !== undefined) finish(ok);
      else {
        socket.once('session', () => finish(ok));
        setTimeout(() => finish(ok), TICKET_WAIT_MS);
      }
    });
    socket.on('error', () => finish(false));
    // Flowing mode, or the post-handshake NewSessionTicket records are never read.
    socket.resume();
  });
}

async function workerMain(settings: ClientSettings): Promise<void> {
  const tally: Tally = { handshakes: 0, failures: 0, missed: 0, groups: {} };
  let stopping = false;
  let latestTicket: Buffer | undefined;
  if (settings.mode === 'resumed') {
    for (let attempt = 0; attempt < 5 && latestTicket === undefined; attempt++) {
      latestTicket = (await oneHandshake({ ...settings, mode: 'full' }, undefined)).ticket;
    }
  }
  const record = (ok: boolean, ticket: Buffer | undefined, group: string | undefined): void => {
    if (ok) tally.handshakes++;
    else tally.failures++;
    if (ok && group !== undefined) tally.groups[group] = (tally.groups[group] ?? 0) + 1;
    if (ticket !== undefined) latestTicket = ticket;
  };
  const loop = async (): Promise<void> => {
    while (!stopping) {
      const { ok, ticket, group } = await oneHandshake(
        settings,
        settings.mode === 'resumed' ? latestTicket : undefined,
      );
      record(ok, ticket, group);
    }
  };
  let inFlight = 0;
  /** Open loop: start what is due since the start, on schedule, whatever finished. */
  const pace = (): Promise<void> =>
    new Promise((resolve) => {
      const startedAt = performance.now();
      let started = 0;
      const tick = (): void => {
        if (stopping) {
          resolve();
          return;
        }
        const due = Math.floor(((performance.now() - startedAt) / 1000) * settings.rate);
        for (; started < due; started++) {
          if (inFlight >= settings.concurrency) {
            tally.missed++;
            continue;
          }
          inFlight++;
          void oneHandshake(settings, settings.mode === 'resumed' ? latestTicket : undefined).then(
            ({ ok, ticket, group }) => {
              inFlight--;
              record(ok, ticket, group);
            },
          );
        }
        setTimeout(tick, PACER_TICK_MS);
      };
      tick();
    });
  const loops = settings.rate > 0 ? [pace()] : Array.from({ length: settings.concurrency }, loop);
  const reporter = setInterval(() => {
    parentPort?.postMessage({ ...tally });
    tally.handshakes = 0;
    tally.failures = 0;
    tally.missed = 0;
    tally.groups = {};
  }, 100);
  parentPort?.on('message', () => {
    stopping = true;
  });
  await Promise.all(loops);
  clearInterval(reporter);
  parentPort?.postMessage({ ...tally });
  parentPort?.close();
}

function flag(name: string, fallback: string): string {
  const prefix = `--${name}=`;
  return process.argv.find((a) => a.startsWith(prefix))?.slice(prefix.length) ?? fallback;
}

async function main(): Promise<void> {
  const workerCount = Number(flag('workers', '2'));
  const rate = Number(flag('rate', '0'));
  const settings: ClientSettings = {
    port: Number(flag('port', '0')),
    mode: flag('mode', 'full') === 'resumed' ? 'resumed' : 'full',
    concurrency: Number(flag('concurrency', '32')),
    rate: rate > 0 ? rate / workerCount : 0,
    groups: flag('groups', ''),
  };
  const warmupMs = Number(flag('warmup', '2')) * 1000;
  const durationMs = Number(flag('duration', '10')) * 1000;
  const total: Tally = { handshakes: 0, failures: 0, missed: 0, groups: {} };
  const workers = Array.from({ length: workerCount }, () => {
    const worker = new Worker(new URL(import.meta.url), { workerData: settings });
    worker.on('message', (t: Tally) => {
      total.handshakes += t.handshakes;
      total.failures += t.failures;
      total.missed += t.missed;
      for (const [group, count] of Object.entries(t.groups))
        total.groups[group] = (total.groups[group] ?? 0) + count;
    });
    return worker;
  });
  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
  await sleep(warmupMs);
  process.stdout.write(`${JSON.stringify({ event: 'measure_start' })}\n`);
  const start = { ...total };
  const startCpu = process.cpuUsage();
  const startAt = performance.now();
  await sleep(durationMs);
  const seconds = (performance.now() - startAt) / 1000;
  const end = { ...total };
  const cpu = process.cpuUsage(startCpu);
  process.stdout.write(`${JSON.stringify({ event: 'measure_end' })}\n`);
  for (const worker of workers) worker.postMessage('stop');
  await Promise.race([
    Promise.all(workers.map((w) => new Promise((r) => w.once('exit', r)))),
    sleep(CONNECT_TIMEOUT_MS + 1000),
  ]);
  const handshakes = end.handshakes - start.handshakes;
  const result = {
    mode: settings.mode,
    seconds,
    handshakes,
    failures: end.failures - start.failures,
    missed: end.missed - start.missed,
    rateOffered: Math.max(rate, 0),
    /** Over the whole run, warm-up included: the server's choice does not change. */
    groups: total.groups,
    handshakesPerSecond: handshakes / seconds,
    clientCpuMicrosPerHandshake: handshakes > 0 ? (cpu.user + cpu.system) / handshakes : null,
  };
  process.stdout.write(`${JSON.stringify({ event: 'result', result })}\n`);
  process.exit(0);
}

if (isMainThread) void main();
else void workerMain(workerData as ClientSettings);
