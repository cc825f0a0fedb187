/**
 * The limiter in front of the per-connection failure lines (src/ops/failure-log.ts): per
 * reason, the first lines of an interval, then one summary line; every line at debug.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, test } from 'node:test';
import { pino } from 'pino';
import { briefError, RateLimitedFailureLog } from '../../src/ops/failure-log.js';

// The limiter's timers are unref'd (no process stays up for a summary line), so while a
// test waits for one, something must hold the event loop open: Node 22's runner cancels a
// test whose loop has emptied ("Promise resolution is still pending…").
let keepAlive: NodeJS.Timeout | undefined;
beforeEach(() => {
  keepAlive = setInterval(() => {}, 60_000);
});
afterEach(() => clearInterval(keepAlive));

interface Line {
  readonly level: number;
  readonly msg: string;
  readonly reason?: string;
  readonly suppressed?: number;
  readonly err?: Record<string, unknown>;
}

function capture(level: 'info' | 'debug') {
  const lines: Line[] = [];
  const written = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const text of chunk.toString('utf8').split('\n'))
        if (text !== '') lines.push(JSON.parse(text) as Line);
      this.emit('line');
      callback();
    },
  });
  return { lines, written, logger: pino({ level }, written) };
}

/** An OpenSSL error as node raises it: its whole error queue in the message. */
function opensslError(): Error {
  const error = new Error(
    '40BD23890B7F0000:error:0A00009C:SSL routines:tls_validate_record_header:http request:../deps/openssl/openssl/ssl/record/methods/tlsany_meth.c:68:\n',
  );
  return Object.assign(error, {
    library: 'SSL routines',
    reason: 'http request',
    code: 'ERR_SSL_HTTP_REQUEST',
  });
}

test('per reason: the first lines of the interval, then one summary line per reason', async () => {
  const { lines, written, logger } = capture('info');
  const limited = new RateLimitedFailureLog(logger, { linesPerInterval: 3, intervalMs: 200 });
  for (let index = 0; index < 50; index++)
    limited.info(
      { reason: 'not_tls', client: `127.0.0.1:${index}`, err: opensslError() },
      'handshake failed',
    );
  for (let index = 0; index < 2; index++)
    limited.info({ reason: 'handshake_error' }, 'handshake failed');
  for (let index = 0; index < 5; index++)
    limited.warn({ reason: 'backend_refused' }, 'connection failed');
  const byReason = (reason: string) => lines.filter((line) => line.reason === reason);
  assert.equal(byReason('not_tls').length, 3);
  assert.equal(byReason('handshake_error').length, 2);
  assert.equal(byReason('backend_refused').length, 3);
  while (!lines.some((line) => line.msg.startsWith('suppressed 2 '))) await once(written, 'line');
  const summaries = lines.filter((line) => line.msg.startsWith('suppressed'));
  assert.deepEqual(
    summaries.map((line) => [line.msg, line.level, line.suppressed]),
    [
      ['suppressed 47 not_tls in the last 0.2 s', 30, 47],
      ['suppressed 2 backend_refused in the last 0.2 s', 40, 2],
    ],
  );
  // A new interval: lines are written again.
  limited.info({ reason: 'not_tls' }, 'handshake failed');
  assert.equal(byReason('not_tls').filter((line) => line.msg === 'handshake failed').length, 4);
  limited.flush();
});

test('thousands of suppressed lines are counted with a thousands separator', async () => {
  const { lines, written, logger } = capture('info');
  const limited = new RateLimitedFailureLog(logger, { linesPerInterval: 1, intervalMs: 100 });
  for (let index = 0; index < 14_204; index++)
    limited.info({ reason: 'tls_handshake_failed' }, 'handshake failed');
  while (!lines.some((line) => line.msg.startsWith('suppressed'))) await once(written, 'line');
  assert.equal(lines.at(-1)?.msg, 'suppressed 14,203 tls_handshake_failed in the last 0.1 s');
});

test('below debug a line names the error by code and OpenSSL reason, without its stack', () => {
  const { lines, logger } = capture('info');
  new RateLimitedFailureLog(logger).info(
    { reason: 'not_tls', client: '127.0.0.1:1', err: opensslError() },
    'handshake failed',
  );
  assert.deepEqual(lines[0]?.err, { code: 'ERR_SSL_HTTP_REQUEST', message: 'http request' });
  assert.ok(JSON.stringify(lines[0]).length < 250, JSON.stringify(lines[0]));
  const reset = Object.assign(new Error('read ECONNRESET'), {
    code: 'ECONNRESET',
    syscall: 'read',
  });
  assert.deepEqual(briefError(reset), {
    code: 'ECONNRESET',
    message: 'read ECONNRESET',
    syscall: 'read',
  });
});

test('at debug every line is written, with the whole error', () => {
  const { lines, logger } = capture('debug');
  const limited = new RateLimitedFailureLog(logger, { linesPerInterval: 1, intervalMs: 60_000 });
  for (let index = 0; index < 25; index++)
    limited.info({ reason: 'not_tls', err: opensslError() }, 'handshake failed');
  assert.equal(lines.length, 25);
  assert.match(String(lines[24]?.err?.stack), /tlsany_meth\.c/);
  limited.flush();
  assert.equal(lines.length, 25, 'nothing suppressed, nothing to summarize');
});

test('a level the logger does not write is neither written nor counted', () => {
  const { lines, logger } = capture('info');
  logger.level = 'warn';
  const limited = new RateLimitedFailureLog(logger, { linesPerInterval: 1, intervalMs: 60_000 });
  for (let index = 0; index < 5; index++) limited.info({ reason: 'not_tls' }, 'handshake failed');
  limited.flush();
  assert.equal(lines.length, 0);
});

test('flush (on exit) writes the summary of the interval under way, with its length so far', () => {
  const { lines, logger } = capture('info');
  const limited = new RateLimitedFailureLog(logger, { linesPerInterval: 2, intervalMs: 60_000 });
  for (let index = 0; index < 7; index++) limited.warn({ reason: 'shutdown' }, 'connection failed');
  limited.flush();
  assert.equal(lines.length, 3);
  assert.match(String(lines[2]?.msg), /^suppressed 5 shutdown in the last 0(\.\d)? s$/);
  assert.equal(lines[2]?.level, 40);
});
