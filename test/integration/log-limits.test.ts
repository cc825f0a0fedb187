/**
 * What hostile traffic can cost in log lines: per-connection failure lines are limited per
 * reason (a summary line says how many were not written) while the failure counters stay
 * exact.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { FAILURE_LINES_PER_INTERVAL } from '../../src/ops/failure-log.js';
import { processEnded } from '../helpers/cluster.js';
import { readLogFile } from '../helpers/log-file.js';
import { eventually } from '../kit/eventually.js';
import { makeCertificate } from '../kit/pki.js';
import { freePort } from '../kit/ports.js';
import { scrapeMetrics } from '../kit/scrape.js';
import { descendants, startUnhitch, type UnhitchLogLine } from '../kit/unhitch-process.js';

const cert = makeCertificate('log-limits', ['localhost']);
const logModuleUrl = new URL('../../src/ops/log.js', import.meta.url).href;
const metricsModuleUrl = new URL('../../src/ops/metrics.js', import.meta.url).href;

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-log-limits-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
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
    () => (readLogFile(log).some((line) => line.msg === 'worker ready') ? true : undefined),
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
    const lines = readLogFile(log);
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

/**
 * A syslog daemon that hangs: it binds its socket and reads nothing until told to (a line
 * on its stdin), then prints every datagram.
 */
function hungSyslog(t: TestContext, socketPath: string) {
  const listener = spawn(
    'python3',
    [
      '-c',
      [
        'import socket, sys',
        's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
        's.bind(sys.argv[1])',
        'print("ready", flush=True)',
        'sys.stdin.readline()',
        'while True:',
        '    print(s.recv(65536).decode("utf-8", "replace").replace("\\n", " "), flush=True)',
      ].join('\n'),
      socketPath,
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  t.after(() => {
    if (listener.exitCode === null) listener.kill('SIGKILL');
  });
  let received = '';
  listener.stdout.on('data', (chunk: Buffer) => {
    received += chunk.toString('utf8');
  });
  return {
    received: () => received,
    startReading: () => listener.stdin.write('read\n'),
  };
}

/**
 * A process that logs 50,000 lines of ~500 bytes (25 MB) to syslog at `socketPath`, then
 * reports its heap growth and metrics on stdout; on SIGUSR2 it logs one more line.
 */
async function flood(t: TestContext, socketPath: string) {
  const script = `
    const { createLogger } = await import(${JSON.stringify(logModuleUrl)});
    const { createWorkerMetrics } = await import(${JSON.stringify(metricsModuleUrl)});
    const logger = createLogger({
      level: 'info', quiet: false, console: false, syslog: { facility: 'local0' },
    });
    const metrics = createWorkerMetrics({
      workerId: 0, activeConnections: () => 0, collectProcessMetrics: false,
    });
    globalThis.gc();
    const before = process.memoryUsage().heapUsed;
    const filler = 'x'.repeat(400);
    for (let line = 0; line < 50_000; line++) {
      logger.info({ line, filler }, 'flood');
      if (line % 500 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    globalThis.gc();
    const growth = process.memoryUsage().heapUsed - before;
    const text = await metrics.registry.metrics();
    // Before the report: the test signals once it has read it, and SIGUSR2 unhandled ends
    // the process.
    process.on('SIGUSR2', () => logger.info('one more line'));
    console.log(JSON.stringify({ growth, metrics: text }));
    setInterval(() => {}, 1_000);
  `;
  const flooder = spawn(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], {
    env: { ...process.env, UNHITCH_SYSLOG_SOCKET: socketPath },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.after(() => {
    if (flooder.exitCode === null) flooder.kill('SIGKILL');
  });
  const [report] = (await once(flooder.stdout, 'data')) as [Buffer];
  const { growth, metrics } = JSON.parse(report.toString('utf8')) as {
    growth: number;
    metrics: string;
  };
  const dropped = Number(
    /unhitch_log_lines_dropped_total\{cause="syslog_backlog"\} (\d+)/.exec(metrics)?.[1],
  );
  return { flooder, growth, dropped };
}

/** A hung syslog socket, and a process that flooded it (flood()). */
async function floodHungSyslog(t: TestContext) {
  const socketPath = join(tempDir(t), 'log.sock');
  const syslog = hungSyslog(t, socketPath);
  await eventually(
    () => (syslog.received().startsWith('ready') ? true : undefined),
    10_000,
    'listener',
  );
  return { syslog, ...(await flood(t, socketPath)) };
}

const DROPPED_LINE = /syslog: (\d+) lines dropped while syslog took none/;

test('syslog = on and a socket that stops reading: memory bounded, drops counted in the metric, one line when it reads again', async (t) => {
  const { syslog, growth, dropped } = await floodHungSyslog(t);
  t.diagnostic(`heap growth ${(growth / 1e6).toFixed(1)} MB, ${dropped} lines dropped`);
  assert.ok(growth < 8e6, `heap grew ${growth} bytes while syslog did not read`);
  assert.ok(dropped > 40_000, `${dropped} lines dropped`);

  syslog.startReading();
  const recovered = await eventually(
    () => DROPPED_LINE.exec(syslog.received()) ?? undefined,
    30_000,
    'the line saying how many were dropped',
  );
  assert.equal(Number(recovered[1]), dropped);
  assert.match(syslog.received(), /UNHITCH_SYSLOG_DROPPED/);
});

test('syslog: logger(1) killed while lines were being dropped: its successor says how many were lost', async (t) => {
  const { syslog, flooder, dropped } = await floodHungSyslog(t);
  assert.ok(dropped > 40_000, `${dropped} lines dropped`);
  const loggers = descendants(flooder.pid as number).filter(
    (pid) => readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'logger',
  );
  assert.equal(loggers.length, 1, 'one logger(1) child');
  const [logger] = loggers as [number];
  process.kill(logger, 'SIGKILL');
  await eventually(() => (processEnded(logger) ? true : undefined), 10_000, 'logger gone');
  // Its backlog is gone with it: no 'drain' will ever say the count.
  syslog.startReading();
  // One more line per poll: the first may still reach the dead logger's pipe (dropped).
  const recovered = await eventually(
    () => {
      assert.equal(flooder.signalCode ?? flooder.exitCode, null, 'the flooding process ended');
      flooder.kill('SIGUSR2');
      return DROPPED_LINE.exec(syslog.received()) ?? undefined;
    },
    30_000,
    'the line saying how many were dropped',
  );
  assert.ok(Number(recovered[1]) >= dropped, `said ${recovered[1]}, ${dropped} dropped before`);
  assert.match(syslog.received(), /one more line/);
});

test('syslog: logger(1) that cannot start (not on PATH) is tried again; the lines lost meanwhile are counted and said', async (t) => {
  const socketPath = join(tempDir(t), 'log.sock');
  const syslog = hungSyslog(t, socketPath);
  await eventually(
    () => (syslog.received().startsWith('ready') ? true : undefined),
    10_000,
    'listener',
  );
  syslog.startReading();
  // logger(1) is looked up on PATH at each start: first nowhere, then where it is.
  const script = `
    const { createLogger } = await import(${JSON.stringify(logModuleUrl)});
    const { createWorkerMetrics } = await import(${JSON.stringify(metricsModuleUrl)});
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    const logger = createLogger({
      level: 'info', quiet: false, console: false, syslog: { facility: 'local0' },
    });
    const metrics = createWorkerMetrics({
      workerId: 0, activeConnections: () => 0, collectProcessMetrics: false,
    });
    for (let line = 0; line < 20; line++) {
      logger.info({ line }, 'lost');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    process.env.PATH = path;
    const text = await metrics.registry.metrics();
    // Before the report, as in flood(): a SIGUSR2 with no handler would end the process.
    process.on('SIGUSR2', () => logger.info('after the retry'));
    console.log(/unhitch_log_lines_dropped_total\\{cause="syslog_backlog"\\} (\\d+)/.exec(text)?.[1]);
    setInterval(() => {}, 1_000);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, UNHITCH_SYSLOG_SOCKET: socketPath },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const [report] = (await once(child.stdout, 'data')) as [Buffer];
  const droppedBefore = Number(report.toString('utf8').trim());
  assert.ok(droppedBefore >= 19, `${droppedBefore} lines counted as dropped`);
  // One more line per poll until the retry (SYSLOG_SPAWN_RETRY_MS) starts logger(1).
  const recovered = await eventually(
    () => {
      assert.equal(child.signalCode ?? child.exitCode, null, 'the logging process ended');
      child.kill('SIGUSR2');
      return DROPPED_LINE.exec(syslog.received()) ?? undefined;
    },
    30_000,
    'the line saying how many were dropped',
  );
  assert.ok(Number(recovered[1]) >= droppedBefore, `said ${recovered[1]}, ${droppedBefore} before`);
  assert.match(syslog.received(), /after the retry/);
  assert.doesNotMatch(syslog.received(), /"msg":"lost"|lost/);
});
