/**
 * Per-client limits with the real binary and real sockets from several loopback source
 * addresses (127.0.0.2, 127.0.0.3, ::1): each limit holds for the offending address while
 * another is served; a refused connection is closed at accept with no byte written, even
 * to a full ClientHello; the refusal counter is exact and the log lines are limited; the
 * deny file is re-read on SIGHUP with connections streaming through the reload, none of
 * which loses a byte; behind proxy-proxy the header's address is the client; a repeat
 * offender is refused by every worker.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { type ConnectionOptions, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { FAILURE_LINES_PER_INTERVAL } from '../../src/ops/failure-log.js';
import { captureClientHello } from '../helpers/client-hello.js';
import { echo, type RunningCluster, startCluster } from '../helpers/cluster.js';
import { eventually } from '../kit/eventually.js';
import { makeCertificate } from '../kit/pki.js';
import { freePort } from '../kit/ports.js';
import { connectClient } from '../kit/proxy-fixture.js';
import { scrapeMetrics } from '../kit/scrape.js';
import { asNonRootWorkers, CLI, runToExit, type UnhitchLogLine } from '../kit/unhitch-process.js';

const ATTACKER = '127.0.0.2';
const BYSTANDER = '127.0.0.3';

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-limits-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

let clientHello: Buffer | undefined;

/**
 * A TCP connection from `localAddress` that sends a real ClientHello: what comes back
 * first, the server's first byte or the close. Refused at accept: closed, nothing read.
 */
async function attempt(
  port: number,
  localAddress: string,
  host = '127.0.0.1',
): Promise<'served' | 'closed'> {
  clientHello ??= await captureClientHello({ servername: 'localhost' });
  const socket = netConnect({ host, port, localAddress });
  socket.on('error', () => {}); // a reset of the unread ClientHello: still 'close'
  socket.write(clientHello);
  const outcome = await new Promise<'served' | 'closed'>((resolve) => {
    socket.once('data', () => resolve('served'));
    socket.once('close', () => resolve('closed'));
  });
  socket.destroy();
  return outcome;
}

/** A TLS connection from `localAddress`, one echo round trip, left open. */
async function openEcho(
  port: number,
  localAddress: string,
  host = '127.0.0.1',
): Promise<TLSSocket> {
  // node's tls.connect passes localAddress to its net socket; its type does not say so.
  const client = await connectClient(port, { host, localAddress } as ConnectionOptions);
  assert.equal(await echo(client, `from ${localAddress}`), `from ${localAddress}`);
  return client;
}

async function refusedCount(metricsPort: number, reason: string): Promise<number | undefined> {
  return (await scrapeMetrics(metricsPort)).get(
    `unhitch_connections_refused_total{reason="${reason}"}`,
  );
}

async function withMetrics(
  t: TestContext,
  options: Parameters<typeof startCluster>[1],
): Promise<RunningCluster & { metricsPort: number }> {
  const metricsPort = await freePort();
  const cluster = await startCluster(t, {
    ...options,
    args: [...(options?.args ?? []), `--metrics=127.0.0.1:${metricsPort}`],
  });
  return { ...cluster, metricsPort };
}

const refusalLines = (reason: string) => (line: UnhitchLogLine) =>
  line.msg === 'connection refused' && line.reason === reason;

test('per-ip-max-connections: the third connection of 127.0.0.2 is closed at accept unanswered; 127.0.0.3 and ::1 are served; a close frees a slot', async (t) => {
  const ipv6Port = await freePort();
  const cluster = await withMetrics(t, {
    workers: 1,
    args: ['--per-ip-max-connections=2', `--frontend=[::1]:${ipv6Port}`],
  });
  const { port, metricsPort } = cluster;
  const held = [await openEcho(port, ATTACKER), await openEcho(port, ATTACKER)];
  t.after(() => {
    for (const client of held) client.destroy();
  });
  assert.equal(await attempt(port, ATTACKER), 'closed');
  assert.equal(await attempt(port, ATTACKER), 'closed');
  const others = [
    await openEcho(port, BYSTANDER),
    await openEcho(port, BYSTANDER),
    await openEcho(ipv6Port, '::1', '::1'),
    await openEcho(ipv6Port, '::1', '::1'),
  ];
  assert.equal(await attempt(ipv6Port, '::1', '::1'), 'closed', '::1 has its own two');
  for (const client of others) client.destroy();
  const metrics = await scrapeMetrics(metricsPort);
  assert.equal(
    metrics.get('unhitch_connections_refused_total{reason="per_ip_max_connections"}'),
    3,
  );
  assert.equal(metrics.get('unhitch_connections_refused_total{reason="per_ip_rate"}'), 0);
  // Refused connections are not accepted ones: 2 + 4 served.
  assert.equal(metrics.get('unhitch_connections_accepted_total'), 6);
  const lines = await cluster.unhitch.waitForLogs(refusalLines('per_ip_max_connections'), 3);
  assert.match(String(lines[0]?.client), /^(::ffff:)?127\.0\.0\.2:\d+$/);
  assert.equal(lines[0]?.code, 'UNHITCH_CONNECTION_REFUSED');

  // One of 127.0.0.2's connections ends: once the worker has seen it go, one more fits.
  const leaving = held.pop() as TLSSocket;
  leaving.destroy();
  await once(leaving, 'close');
  const again = await eventually(
    async () => ((await attempt(port, ATTACKER)) === 'served' ? true : undefined),
    10_000,
    'a slot of 127.0.0.2 freed by its close',
  );
  assert.equal(again, true);
});

test('per-ip-connection-rate: a burst of 1 from 127.0.0.2, the rest closed at accept; 127.0.0.3 is served; the counter is exact', async (t) => {
  const { port, metricsPort } = await withMetrics(t, {
    workers: 1,
    args: ['--per-ip-connection-rate=1'],
  });
  const attempts = 6;
  // At once: the bucket (1 a second, burst 1) cannot refill in the time they take.
  const outcomes = await Promise.all(
    Array.from({ length: attempts }, () => attempt(port, ATTACKER)),
  );
  const refused = outcomes.filter((outcome) => outcome === 'closed').length;
  assert.ok(refused >= attempts - 2, `${refused} of ${attempts} refused: ${outcomes}`);
  assert.ok(outcomes.includes('served'));
  const bystander = await openEcho(port, BYSTANDER);
  bystander.destroy();
  assert.equal(await refusedCount(metricsPort, 'per_ip_rate'), refused);
});

/** A connection that sends and checks its echo in a loop until `stop()`, counting bytes. */
function streamer(client: TLSSocket, label: string) {
  let sent = 0;
  let received = 0;
  let stopped = false;
  let closed = false;
  client.on('close', () => {
    closed = true;
  });
  const chunk = Buffer.alloc(1024, label);
  const MAX_ROUNDS = 100_000;
  const done = (async () => {
    for (let round = 0; round < MAX_ROUNDS && !stopped; round++) {
      client.write(chunk);
      sent += chunk.length;
      let pending = chunk.length;
      while (pending > 0) {
        const [data] = (await once(client, 'data')) as [Buffer];
        assert.ok(
          data.every((byte) => byte === chunk[0]),
          `${label}: foreign bytes`,
        );
        pending -= data.length;
        received += data.length;
      }
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await done;
      return { sent, received, closed };
    },
    rounds: () => sent / chunk.length,
  };
}

test('deny-file: re-read on SIGHUP with connections streaming through the reload: every byte arrives, none is closed; only new connections of the newly denied address are refused; a bad file keeps the list', async (t) => {
  const dir = tempDir(t);
  const deny = join(dir, 'deny.txt');
  writeFileSync(deny, '# nobody yet\n192.0.2.0/24\n');
  const cluster = await withMetrics(t, { workers: 2, args: [`--deny-file=${deny}`] });
  const { port, metricsPort, unhitch } = cluster;
  const clients = [
    await openEcho(port, BYSTANDER),
    await openEcho(port, BYSTANDER),
    await openEcho(port, ATTACKER),
    await openEcho(port, ATTACKER),
  ];
  t.after(() => {
    for (const client of clients) client.destroy();
  });
  const streams = clients.map((client, index) => streamer(client, String.fromCharCode(97 + index)));

  writeFileSync(deny, `# 127.0.0.3 misbehaves\n${BYSTANDER}\n2001:db8::/32\n`);
  unhitch.kill('SIGHUP');
  await unhitch.waitForLog((line) => line.msg === 'reloaded', 20_000, 'reloaded');
  assert.equal(await attempt(port, BYSTANDER), 'closed');
  (await openEcho(port, ATTACKER)).destroy();

  // A bad line: the reload is refused with the file's line and column, the list stays.
  writeFileSync(deny, `${BYSTANDER}\n\n10.0.0.0/40\n`);
  unhitch.kill('SIGHUP');
  const rejected = await unhitch.waitForLog(
    (line) => line.code === 'UNHITCH_RELOAD_REJECTED',
    20_000,
  );
  assert.match(
    JSON.stringify(rejected.err),
    new RegExp(
      `${deny.replaceAll('.', '\\.')}:3:1: not an address or range: \\\\"10\\.0\\.0\\.0/40\\\\"`,
    ),
  );
  assert.equal(await attempt(port, BYSTANDER), 'closed');
  (await openEcho(port, ATTACKER)).destroy();

  await eventually(
    () => (streams.every((stream) => stream.rounds() > 20) ? true : undefined),
    20_000,
    'every connection streamed after the reloads',
  );
  for (const stream of streams) {
    const { sent, received, closed } = await stream.stop();
    assert.equal(closed, false);
    assert.equal(received, sent);
  }
  assert.equal(await refusedCount(metricsPort, 'denied'), 2);
});

test('proxy-proxy: the client is the address the PROXY header names, not the load balancer', async (t) => {
  const dir = tempDir(t);
  const deny = join(dir, 'deny.txt');
  writeFileSync(deny, `${BYSTANDER}\n`);
  const { port, metricsPort } = await withMetrics(t, {
    workers: 1,
    args: ['--proxy-proxy', `--deny-file=${deny}`, '--per-ip-max-connections=1'],
  });
  /** From 127.0.0.1 (the load balancer), for the client the header names. */
  const behindBalancer = async (client: string): Promise<TLSSocket | 'closed'> => {
    const raw = netConnect({ host: '127.0.0.1', port });
    raw.on('error', () => {});
    await once(raw, 'connect');
    raw.write(`PROXY TCP4 ${client} 127.0.0.1 40000 ${port}\r\n`);
    const tls = tlsConnect({ socket: raw, servername: 'localhost', rejectUnauthorized: false });
    tls.on('error', () => {});
    const outcome = await new Promise<TLSSocket | 'closed'>((resolve) => {
      tls.once('secureConnect', () => resolve(tls));
      raw.once('close', () => resolve('closed'));
    });
    return outcome;
  };
  assert.equal(await behindBalancer(BYSTANDER), 'closed', 'denied by the header address');
  const first = await behindBalancer(ATTACKER);
  assert.notEqual(first, 'closed');
  t.after(() => (first as Socket).destroy());
  // The backend hears the header passed on, then the client's bytes.
  (first as TLSSocket).write('through');
  let heard = '';
  while (!heard.endsWith('through')) {
    const [chunk] = (await once(first as TLSSocket, 'data')) as [Buffer];
    heard += chunk.toString();
  }
  assert.equal(heard, `PROXY TCP4 ${ATTACKER} 127.0.0.1 40000 ${port}\r\nthrough`);
  assert.equal(await behindBalancer(ATTACKER), 'closed', 'one per client, counted by header');
  const other = await behindBalancer('192.0.2.7');
  assert.notEqual(other, 'closed', 'same balancer, another client');
  (other as Socket).destroy();
  (first as Socket).destroy();
  // A connection refused once its header was read is no longer counted as opening.
  await eventually(
    async () =>
      (await scrapeMetrics(metricsPort)).get('unhitch_active_connections') === 0 ? true : undefined,
    10_000,
    'no connection left open',
  );
  const metrics = await scrapeMetrics(metricsPort);
  assert.equal(metrics.get('unhitch_connections_refused_total{reason="denied"}'), 1);
  assert.equal(
    metrics.get('unhitch_connections_refused_total{reason="per_ip_max_connections"}'),
    1,
  );
});

test('deny-repeat-offenders: plaintext from 127.0.0.2 bans it in every worker and in the workers of a reload; 127.0.0.3 is served', async (t) => {
  const { port, metricsPort, unhitch } = await withMetrics(t, {
    workers: 2,
    args: ['--deny-repeat-offenders=3/60s:10m'],
  });
  const workers = unhitch.workerPids();
  for (let index = 0; index < 3; index++) {
    const socket = netConnect({ host: '127.0.0.1', port, localAddress: ATTACKER });
    socket.on('error', () => {});
    socket.end('GET / HTTP/1.0\r\n\r\n');
    socket.resume();
    await once(socket, 'close');
  }
  // The three may have met different workers, each counting its own: what bans is one
  // worker's third. Send plaintext from 127.0.0.2 until a worker bans it.
  await eventually(
    async () => {
      if (unhitch.lines.some((line) => line.code === 'UNHITCH_CLIENT_BANNED')) return true;
      const socket = netConnect({ host: '127.0.0.1', port, localAddress: ATTACKER });
      socket.on('error', () => {});
      socket.end('GET / HTTP/1.0\r\n\r\n');
      socket.resume();
      await once(socket, 'close');
      return undefined;
    },
    20_000,
    'a ban of 127.0.0.2',
  );
  const banned = unhitch.lines.find((line) => line.code === 'UNHITCH_CLIENT_BANNED');
  assert.equal(banned?.client, ATTACKER);
  // Each worker heard of it from the primary.
  await eventually(
    () => {
      const heard = new Set(
        unhitch.lines.filter((line) => line.msg === 'bans received').map((line) => line.pid),
      );
      return workers.every((pid) => heard.has(pid)) ? true : undefined;
    },
    10_000,
    'every worker received the ban',
  );
  const before = (await refusedCount(metricsPort, 'repeat_offender')) ?? 0;
  const outcomes = await Promise.all(Array.from({ length: 8 }, () => attempt(port, ATTACKER)));
  assert.deepEqual(new Set(outcomes), new Set(['closed']), 'refused whichever worker took it');
  (await openEcho(port, BYSTANDER)).destroy();
  assert.equal(await refusedCount(metricsPort, 'repeat_offender'), before + 8);

  // A reload's new workers hold the ban from their first accept (it is in their start order).
  unhitch.kill('SIGHUP');
  await unhitch.waitForLog((line) => line.msg === 'reloaded', 20_000, 'reloaded');
  const after = await Promise.all(Array.from({ length: 8 }, () => attempt(port, ATTACKER)));
  assert.deepEqual(new Set(after), new Set(['closed']), 'the new generation refuses it too');
  (await openEcho(port, BYSTANDER)).destroy();
});

test('refusal lines are limited per reason at log-level info; the counter counts every one', async (t) => {
  const dir = tempDir(t);
  const deny = join(dir, 'deny.txt');
  writeFileSync(deny, `${ATTACKER}\n`);
  const { port, metricsPort, unhitch } = await withMetrics(t, {
    workers: 1,
    args: [`--deny-file=${deny}`, '--log-level=info'],
  });
  const attempts = FAILURE_LINES_PER_INTERVAL * 3;
  for (let index = 0; index < attempts; index++)
    assert.equal(await attempt(port, ATTACKER), 'closed');
  assert.equal(await refusedCount(metricsPort, 'denied'), attempts);
  (await openEcho(port, BYSTANDER)).destroy();
  const lines = unhitch.lines.filter(refusalLines('denied'));
  assert.equal(lines.length, FAILURE_LINES_PER_INTERVAL);
});

test('--test and a start refuse a bad deny file at its line and column; a good one passes --test', async (t) => {
  const dir = tempDir(t);
  const deny = join(dir, 'deny.txt');
  const cert = makeCertificate('limits-test', ['localhost']);
  const args = (extra: string) => [
    CLI,
    '--frontend=[127.0.0.1]:1',
    '--backend=[127.0.0.1]:9',
    `--deny-file=${deny}`,
    ...asNonRootWorkers([]),
    extra,
    cert.combinedPath,
  ];
  writeFileSync(deny, '# ok\n192.0.2.1\n2001:db8::/32 # a comment\n');
  const good = await runToExit(process.execPath, args('--test'));
  assert.equal(good.status, 0, good.stderr);
  writeFileSync(deny, '192.0.2.1\n  2001:db8::/32 10.0.0.1\n');
  const expected = `${deny}:2:17: unexpected "10.0.0.1" after "2001:db8::/32"`;
  const test = await runToExit(process.execPath, args('--test'));
  assert.equal(test.status, 1);
  assert.ok(test.stderr.includes(expected), test.stderr);
  assert.match(test.stderr, /\[UNHITCH_CONFIG_INVALID_VALUE\]/);
  const start = await runToExit(process.execPath, args('--log-level=info'), { timeoutMs: 20_000 });
  assert.equal(start.status, 1);
  assert.ok(`${start.stdout}${start.stderr}`.includes(expected), start.stderr);
});
