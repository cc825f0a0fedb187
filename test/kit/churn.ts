/**
 * Short-connection churn: TLS connect, one echo round trip, clean close both ways, again.
 * Shared by the churn integration test (20 s) and bench/churn.ts (10^5 connections).
 */
import { once } from 'node:events';
import { connect as tlsConnect } from 'node:tls';
import type { ProcessSample } from './proc.js';

export interface ChurnCounts {
  ok: number;
  failed: number;
}

/**
 * A healthy short connection on loopback takes milliseconds; the bound only exists so one
 * stuck connection cannot hold a lane (and the whole run) forever.
 */
const SHORT_CONNECTION_TIMEOUT_MS = 10_000;

function churnError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

/** One short connection: handshake, 'ping' echoed back, clean close both ways. */
export async function shortConnection(
  port: number,
  timeoutMs = SHORT_CONNECTION_TIMEOUT_MS,
): Promise<void> {
  // allowHalfOpen is honoured by tls.connect (it reaches the net.Socket) but missing from
  // ConnectionOptions' type; a variable instead of a literal skips the excess-property check.
  const options = {
    host: '127.0.0.1',
    port,
    rejectUnauthorized: false,
    servername: 'localhost',
    allowHalfOpen: true,
  };
  const client = tlsConnect(options);
  const timer = setTimeout(
    () =>
      client.destroy(churnError('CHURN_TIMEOUT', `short connection not done in ${timeoutMs} ms`)),
    timeoutMs,
  );
  const closed = once(client, 'close');
  // An error before the close is awaited must not become an unhandled rejection; the
  // await below still sees it.
  closed.catch(() => undefined);
  try {
    await once(client, 'secureConnect');
    client.write('ping');
    const [reply] = (await once(client, 'data')) as [Buffer];
    if (reply.toString() !== 'ping') {
      throw churnError('CHURN_BAD_ECHO', `expected 'ping' echoed, got '${reply.toString()}'`);
    }
    client.end();
    await closed;
  } finally {
    clearTimeout(timer);
    client.destroy();
  }
}

/**
 * `parallel` lanes of back-to-back short connections until `until()` says stop (checked
 * before each connection). `counts` is filled as connections finish, so a caller can
 * report progress while the churn runs; it is also the result.
 */
export async function churn(
  port: number,
  until: () => boolean,
  parallel: number,
  counts: ChurnCounts = { ok: 0, failed: 0 },
): Promise<ChurnCounts> {
  const lane = async (): Promise<void> => {
    while (!until()) {
      try {
        await shortConnection(port);
        counts.ok += 1;
      } catch {
        counts.failed += 1;
      }
    }
  };
  await Promise.all(Array.from({ length: parallel }, lane));
  return counts;
}

/**
 * Enough connections for V8's heap and the TLS caches to reach their working size (RSS
 * plateaus after a few thousand), bounded in time on a slow or busy machine.
 */
export const WARMUP_CONNECTIONS = 3_000;
const WARMUP_MAX_MS = 15_000;

/** Churns until the worker has reached its working size: the baseline is taken after this. */
export function warmUp(port: number, parallel: number): Promise<ChurnCounts> {
  const started = Date.now();
  let starts = 0;
  return churn(
    port,
    () => starts++ >= WARMUP_CONNECTIONS || Date.now() - started >= WARMUP_MAX_MS,
    parallel,
  );
}

/** How far above its baseline a worker may be after churn and still count as leak-free. */
export const LEAK_SLACK = Object.freeze({ fds: 4, rssBytes: 30 * 1024 * 1024 });

export function withinLeakSlack(before: ProcessSample, after: ProcessSample): boolean {
  return (
    after.fds <= before.fds + LEAK_SLACK.fds &&
    after.rssBytes <= before.rssBytes + LEAK_SLACK.rssBytes
  );
}
