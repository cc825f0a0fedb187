#!/usr/bin/env node
/**
 * The legitimate population of bench/abuse: --clients lanes, each a tracker client that
 * connects, does the TLS handshake, upgrades to a WebSocket, sends one announce, waits for the
 * reply and closes, at a fixed rate (closed loop: a lane starts its next session at its next
 * slot, or at once when the previous one ran past it). Each lane has its own source address
 * (127.0.1.1, 127.0.1.2 …, like users behind their own addresses; --sources=single puts them
 * all on 127.0.0.1), so per-address limits see a user each. Prints JSON events
 * measure_start / measure_end / result (a LegitResult) on stdout.
 *   node abuse-legit.js --port=P [--clients=16] [--rate=80] [--warmup=1] [--duration=8]
 *     [--sources=spread|single]
 * The handshake latency is from the connect call to secureConnect: the accept queue, the
 * proxy's wait before it reads the ClientHello and the handshake itself. X25519 only, as Hitch
 * and HAProxy on OpenSSL 3.0 choose it anyway (the same work for every proxy).
 */
import { randomBytes } from 'node:crypto';
import { connect as connectTcp } from 'node:net';
import { connect as connectTls, createSecureContext } from 'node:tls';
import { announceWithOffers, isAnnounceAnswer, randomId } from '../wt-load/protocol.js';
import type { LegitResult } from './abuse-kinds.js';
import { decodeServerFrames, encodeClientFrame, handshakeProblem } from './raw-ws-client.js';

const SESSION_TIMEOUT_MS = 5_000;
const OPCODE_TEXT = 0x1;
const OPCODE_CLOSE = 0x8;
const MAX_HEAD_BYTES = 16 * 1024;

type Step = 'connect' | 'handshake' | 'upgrade' | 'announce';

interface SessionOutcome {
  readonly ok: boolean;
  /** The step that failed, when not ok. */
  readonly failedAt: Step | null;
  /** null when the handshake did not complete. */
  readonly handshakeMs: number | null;
}

const secureContext = createSecureContext({ ecdhCurve: 'X25519', minVersion: 'TLSv1.2' });

function announceMessage(): string {
  return announceWithOffers(randomId(), randomId(), [], '');
}

/** One tracker session from `localAddress`: handshake, upgrade, announce, reply, close. */
export function trackerSession(port: number, localAddress: string): Promise<SessionOutcome> {
  return new Promise((resolve) => {
    const startedAt = performance.now();
    let step: Step = 'connect';
    let handshakeMs: number | null = null;
    let settled = false;
    const key = randomBytes(16).toString('base64');
    const raw = connectTcp({ host: '127.0.0.1', port, localAddress, noDelay: true });
    raw.once('connect', () => {
      step = 'handshake';
    });
    const tls = connectTls({
      socket: raw,
      servername: 'localhost',
      rejectUnauthorized: false,
      secureContext,
    });
    const finish = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (ok) {
        tls.end(encodeClientFrame(OPCODE_CLOSE, Buffer.from([0x03, 0xe8])));
        // The proxy closes its side after ours; do not wait for it.
        setTimeout(() => tls.destroy(), 1_000).unref();
      } else {
        tls.destroy();
      }
      resolve({ ok, failedAt: ok ? null : step, handshakeMs });
    };
    const timer = setTimeout(() => finish(false), SESSION_TIMEOUT_MS);
    let bytes: Buffer = Buffer.alloc(0);
    tls.once('secureConnect', () => {
      handshakeMs = performance.now() - startedAt;
      step = 'upgrade';
      tls.write(
        `GET /announce HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
    tls.on('data', (chunk: Buffer) => {
      bytes = bytes.length === 0 ? chunk : Buffer.concat([bytes, chunk]);
      if (step === 'upgrade') {
        const headEnd = bytes.indexOf('\r\n\r\n');
        if (headEnd < 0) {
          if (bytes.length > MAX_HEAD_BYTES) finish(false);
          return;
        }
        if (handshakeProblem(bytes.subarray(0, headEnd).toString('latin1'), key) !== null) {
          finish(false);
          return;
        }
        step = 'announce';
        bytes = bytes.subarray(headEnd + 4);
        tls.write(encodeClientFrame(OPCODE_TEXT, Buffer.from(announceMessage())));
      }
      if (step !== 'announce') return;
      try {
        const { frames, consumed } = decodeServerFrames(bytes);
        bytes = bytes.subarray(consumed);
        for (const frame of frames) {
          if (frame.opcode !== OPCODE_TEXT) continue;
          finish(isAnnounceAnswer(frame.payload));
          return;
        }
      } catch {
        finish(false);
      }
    });
    tls.on('error', () => finish(false));
    tls.once('close', () => finish(false));
  });
}

/** The q-quantile (0..1) of ascending `sorted`, nearest rank; null when empty. */
export function quantile(sorted: readonly number[], q: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] ?? null;
}

interface Window {
  measuring: boolean;
  sessions: number;
  succeeded: number;
  late: number;
  readonly failedAt: Record<string, number>;
  readonly handshakeMs: number[];
}

function flag(name: string, fallback: string): string {
  const prefix = `--${name}=`;
  return process.argv.find((a) => a.startsWith(prefix))?.slice(prefix.length) ?? fallback;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

async function lane(
  index: number,
  settings: { port: number; clients: number; periodMs: number; source: string },
  window: Window,
  stopAt: number,
): Promise<void> {
  let nextAt = performance.now() + (index * settings.periodMs) / settings.clients;
  while (true) {
    await delay(nextAt - performance.now());
    if (performance.now() >= stopAt) return;
    const counted = window.measuring;
    const outcome = await trackerSession(settings.port, settings.source);
    if (counted) {
      window.sessions++;
      if (outcome.ok) window.succeeded++;
      else if (outcome.failedAt !== null) {
        window.failedAt[outcome.failedAt] = (window.failedAt[outcome.failedAt] ?? 0) + 1;
      }
      if (outcome.handshakeMs !== null) window.handshakeMs.push(outcome.handshakeMs);
    }
    nextAt += settings.periodMs;
    const now = performance.now();
    if (now > nextAt) {
      if (counted) window.late++;
      nextAt = now;
    }
  }
}

async function main(): Promise<void> {
  const port = Number(flag('port', '0'));
  const clients = Math.max(1, Math.floor(Number(flag('clients', '16'))));
  const rate = Number(flag('rate', '80'));
  const warmupMs = Number(flag('warmup', '1')) * 1000;
  const durationMs = Number(flag('duration', '8')) * 1000;
  const spread = flag('sources', 'spread') !== 'single';
  const window: Window = {
    measuring: false,
    sessions: 0,
    succeeded: 0,
    late: 0,
    failedAt: {},
    handshakeMs: [],
  };
  const startedAt = performance.now();
  const measureAt = startedAt + warmupMs;
  const stopAt = measureAt + durationMs;
  const periodMs = (clients * 1000) / rate;
  const lanes = Array.from({ length: clients }, (_, index) =>
    lane(
      index,
      { port, clients, periodMs, source: spread ? `127.0.1.${(index % 250) + 1}` : '127.0.0.1' },
      window,
      stopAt,
    ),
  );
  const print = (event: Record<string, unknown>): void => {
    process.stdout.write(`${JSON.stringify(event)}\n`);
  };
  await delay(measureAt - performance.now());
  window.measuring = true;
  print({ event: 'measure_start' });
  await delay(stopAt - performance.now());
  window.measuring = false;
  print({ event: 'measure_end' });
  const seconds = (performance.now() - measureAt) / 1000;
  // Sessions started in the window finish (or time out) before the result.
  await Promise.all(lanes);
  const sorted = [...window.handshakeMs].sort((a, b) => a - b);
  const result: LegitResult = {
    sessions: window.sessions,
    succeeded: window.succeeded,
    failedAt: window.failedAt,
    handshakeP50Ms: quantile(sorted, 0.5),
    handshakeP99Ms: quantile(sorted, 0.99),
    handshakeMaxMs: sorted.at(-1) ?? null,
    late: window.late,
    seconds,
  };
  print({ event: 'result', result });
  setTimeout(() => process.exit(0), 50);
}

if (process.argv[1]?.endsWith('abuse-legit.js')) {
  main().catch((err: unknown) => {
    process.stderr.write(`abuse-legit: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
