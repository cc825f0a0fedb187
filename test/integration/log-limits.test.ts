/**
 * What hostile traffic can cost in log lines: per-connection failure lines are limited per
 * reason (a summary line says how many were not written) while the failure counters stay
 * exact.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { FAILURE_LINES_PER_INTERVAL } from '../../src/ops/failure-log.js';
import { eventually } from '../helpers/eventually.js';
import { freePort } from '../helpers/ports.js';
import { makeCertificate } from '../helpers/proxy-fixture.js';
import { scrapeMetrics } from '../helpers/scrape.js';
import { startUnhitch, type UnhitchLogLine } from '../helpers/unhitch-process.js';

const cert = makeCertificate('log-limits', ['localhost']);

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-log-limits-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function readLines(path: string): UnhitchLogLine[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as UnhitchLogLine);
}

/** An HTTP request to the TLS port, as scanners and misdirected clients send; until closed. */
async function plaintextRequest(port: number): Promise<void> {
  const socket = netConnect(port, '127.0.0.1');
  socket.on('error', () => {});
  await once(socket, 'connect');
  socket.end('GET / HTTP/1.0\r\nHost: example\r\n\r\n');
  socket.resume();
  await once(socket, 'close');
}

test('N plaintext connections: a bounded number of lines and one summary line per interval, the counter says N', async (t) => {
  const dir = tempDir(t);
  const log = join(dir, 'unhitch.log');
  const port = await freePort();
  const metricsPort = await freePort();
  const unhitch = startUnhitch([
    `--frontend=[127.0.0.1]:${port}`,
    '--backend=[127.0.0.1]:9',
    '--workers=1',
    `--metrics=127.0.0.1:${metricsPort}`,
    `--log-filename=${log}`,
    cert.combinedPath,
  ]);
  t.after(() => unhitch.kill('SIGKILL'));
  await eventually(
    () => (readLines(log).some((line) => line.msg === 'worker ready') ? true : undefined),
    20_000,
    'worker ready in the log file',
  );
  const connections = 400;
  const concurrency = 20;
  for (let sent = 0; sent < connections; sent += concurrency)
    await Promise.all(Array.from({ length: concurrency }, () => plaintextRequest(port)));

  const counter = 'unhitch_connection_failures_total{reason="not_tls"}';
  await eventually(
    async () =>
      (await scrapeMetrics(metricsPort)).get(counter) === connections ? true : undefined,
    10_000,
    `${counter} = ${connections}`,
  );
  // The interval ends 10 s after its first line: then the summary is written.
  const isSummary = (line: UnhitchLogLine) =>
    line.reason === 'not_tls' && typeof line.suppressed === 'number';
  const written = (line: UnhitchLogLine) =>
    line.reason === 'not_tls' && line.msg === 'handshake failed';
  const summed = () => {
    const lines = readLines(log);
    const suppressed = lines
      .filter(isSummary)
      .reduce((sum, line) => sum + Number(line.suppressed), 0);
    return suppressed + lines.filter(written).length === connections ? lines : undefined;
  };
  const lines = await eventually(summed, 30_000, `written + suppressed = ${connections}`);
  const summaries = lines.filter(isSummary);
  assert.ok(summaries.length >= 1);
  for (const summary of summaries)
    assert.match(String(summary.msg), /^suppressed [\d,]+ not_tls in the last 10 s$/);
  // At most the limit per interval: one interval per summary, and maybe one under way.
  const failureLines = lines.filter(written);
  assert.ok(
    failureLines.length <= FAILURE_LINES_PER_INTERVAL * (summaries.length + 1),
    `${failureLines.length} lines in ${summaries.length} intervals`,
  );
  for (const line of failureLines) {
    assert.deepEqual(line.err, { code: 'ERR_SSL_HTTP_REQUEST', message: 'http request' });
  }
  const failureBytes = readFileSync(log, 'utf8')
    .split('\n')
    .filter((line) => line.includes('"reason":"not_tls"'))
    .reduce((sum, line) => sum + line.length + 1, 0);
  t.diagnostic(`${connections} connections: ${failureBytes} bytes of not_tls lines`);
  assert.ok(failureBytes < 300 * (failureLines.length + summaries.length), `${failureBytes} bytes`);
});
