#!/usr/bin/env node
/**
 * Round-trip latency through a proxy to an echo backend: --connections sockets (TLS or plain
 * TCP), each sending a --size byte message every --interval-ms and timing its echo, one message
 * in flight per socket, so the rate is fixed and the same for every proxy (latency, not
 * throughput). Round trips go into node's HDR histogram (perf_hooks.createHistogram).
 * Prints measure_start / measure_end / result JSON lines for runMeasuredChild.
 *   node latency-client.js --port=P [--tls] [--connections=1] [--interval-ms=1] [--size=200]
 *     [--warmup=2] [--duration=10]
 */
import { connect as netConnect, type Socket } from 'node:net';
import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect as tlsConnect } from 'node:tls';

function flag(name: string, fallback: string): string {
  const prefix = `--${name}=`;
  return process.argv.find((a) => a.startsWith(prefix))?.slice(prefix.length) ?? fallback;
}

const port = Number(flag('port', '0'));
const tls = process.argv.includes('--tls');
const connections = Number(flag('connections', '1'));
const intervalMs = Number(flag('interval-ms', '1'));
const size = Number(flag('size', '200'));
const warmupMs = Number(flag('warmup', '2')) * 1000;
const durationMs = Number(flag('duration', '10')) * 1000;
const CONNECT_TIMEOUT_MS = 10_000;

let histogram: RecordableHistogram = createHistogram();
/** Round trips that timed out (counted from the measured window on). */
let failures = 0;
/** Connections that never opened: always counted, whenever they failed. */
let connectFailures = 0;
let stopping = false;

function open(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket: Socket = tls
      ? tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false })
      : netConnect({ port, host: '127.0.0.1' });
    socket.setNoDelay(true);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('connect timeout'));
    }, CONNECT_TIMEOUT_MS);
    socket.once(tls ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/** One socket's loop: send, wait for the whole echo, record, wait for the next tick. */
async function pinger(socket: Socket, offsetMs: number): Promise<void> {
  const message = Buffer.alloc(size, 0x61);
  let pending: { sentAt: bigint; received: number; done: () => void } | undefined;
  socket.on('data', (chunk: Buffer) => {
    if (pending === undefined) return;
    pending.received += chunk.length;
    if (pending.received >= size) {
      histogram.record(Number(process.hrtime.bigint() - pending.sentAt));
      pending.done();
    }
  });
  socket.on('error', () => {});
  await sleep(offsetMs);
  let next = performance.now();
  while (!stopping && !socket.destroyed) {
    const echoed = new Promise<void>((resolve) => {
      pending = { sentAt: process.hrtime.bigint(), received: 0, done: resolve };
    });
    socket.write(message);
    const timedOut = await Promise.race([
      echoed.then(() => false),
      sleep(CONNECT_TIMEOUT_MS).then(() => true),
    ]);
    pending = undefined;
    if (timedOut) {
      failures++;
      socket.destroy();
      return;
    }
    next += intervalMs;
    const wait = next - performance.now();
    if (wait > 0) await sleep(wait);
    else next = performance.now();
  }
}

async function main(): Promise<void> {
  const sockets = await Promise.all(
    Array.from({ length: connections }, () =>
      open().catch(() => {
        connectFailures++;
        return undefined;
      }),
    ),
  );
  const open_ = sockets.filter((s): s is Socket => s !== undefined);
  // Spread the sends over the interval so they do not all leave in the same tick.
  const loops = open_.map((socket, i) => pinger(socket, (i * intervalMs) / open_.length));
  await sleep(warmupMs);
  histogram = createHistogram();
  failures = 0;
  process.stdout.write(`${JSON.stringify({ event: 'measure_start' })}\n`);
  const startCpu = process.cpuUsage();
  await sleep(durationMs);
  const measured = histogram;
  const cpu = process.cpuUsage(startCpu);
  process.stdout.write(`${JSON.stringify({ event: 'measure_end' })}\n`);
  stopping = true;
  await Promise.race([Promise.all(loops), sleep(CONNECT_TIMEOUT_MS)]);
  for (const socket of open_) socket.destroy();
  const us = (ns: number): number => ns / 1000;
  const result = {
    connections: open_.length,
    roundTrips: measured.count,
    failures: failures + connectFailures,
    p50Micros: us(measured.percentile(50)),
    p90Micros: us(measured.percentile(90)),
    p99Micros: us(measured.percentile(99)),
    p999Micros: us(measured.percentile(99.9)),
    maxMicros: us(measured.max),
    clientCpuMicrosPerRoundTrip:
      measured.count > 0 ? (cpu.user + cpu.system) / measured.count : null,
  };
  process.stdout.write(`${JSON.stringify({ event: 'result', result })}\n`);
  process.exit(0);
}

void main();
