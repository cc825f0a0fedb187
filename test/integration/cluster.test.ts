/**
 * The clustered binary as operators run it: real processes, real signals, loopback.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { copyFileSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import TrackerServer from 'bittorrent-tracker/server';
import WebSocket from 'ws';
import { readAllowedCpus, readThreadAffinities } from '../../src/cluster/affinity.js';
import { echo, isWorkerReady, processEnded, startCluster } from '../helpers/cluster.js';
import { type AnnounceResponse, announceOn } from '../helpers/webtorrent.js';
import { eventually } from '../kit/eventually.js';
import { makeCertificate } from '../kit/pki.js';
import { freePort } from '../kit/ports.js';
import { connectClient, readAll, waitFor } from '../kit/proxy-fixture.js';
import { startUnhitch, type UnhitchLogLine } from '../kit/unhitch-process.js';

/** Which worker pid logged the handshake of the client whose local port is `port`. */
async function servingPid(lines: UnhitchLogLine[], port: number): Promise<number> {
  let found: UnhitchLogLine | undefined;
  await waitFor(
    () => {
      found = lines.find(
        (line) => line.msg === 'handshake completed' && line.client === `127.0.0.1:${port}`,
      );
      return found !== undefined;
    },
    5_000,
    `handshake log for port ${port}`,
  );
  return (found as UnhitchLogLine).pid as number;
}

test('kill -9 of a worker: its restart is due within a second, the other worker keeps its connections', async (t) => {
  const { unhitch, port } = await startCluster(t, { workers: 2 });

  // Open connections until both workers hold one.
  const clients: TLSSocket[] = [];
  t.after(() => {
    for (const client of clients) client.destroy();
  });
  const byPid = new Map<number, TLSSocket>();
  for (let attempt = 0; attempt < 40 && byPid.size < 2; attempt++) {
    const client = await connectClient(port);
    clients.push(client);
    assert.equal(await echo(client, 'ping'), 'ping');
    byPid.set(await servingPid(unhitch.lines, client.localPort ?? 0), client);
  }
  assert.equal(byPid.size, 2, 'connections landed on both workers');
  const [victimPid, survivorPid] = [...byPid.keys()] as [number, number];
  const survivor = byPid.get(survivorPid) as TLSSocket;

  process.kill(victimPid, 'SIGKILL');
  const died = await unhitch.waitForLog((line) => line.msg === 'worker died; restarting');
  // The restart delay is the behaviour; how long a fork takes on a loaded machine is not.
  assert.ok((died.restartInMs as number) <= 1_000, `restart delay ${died.restartInMs} ms`);
  await unhitch.waitForLogs(isWorkerReady, 3, 30_000);

  assert.equal(
    await echo(survivor, 'still here'),
    'still here',
    'the other worker kept its connection',
  );
  const fresh = await connectClient(port);
  clients.push(fresh);
  assert.equal(await echo(fresh, 'new'), 'new');
  assert.equal(unhitch.workerPids().length, 2);
});

test('kill -9 of the primary: open streams keep flowing until drain-timeout, nothing new is accepted, then the workers exit', async (t) => {
  const drainTimeoutMs = 4_000;
  const { unhitch, port } = await startCluster(t, {
    workers: 2,
    args: [`--drain-timeout=${drainTimeoutMs / 1000}`],
  });
  const workers = unhitch.workerPids();
  assert.equal(workers.length, 2);
  t.after(() => {
    for (const pid of workers) if (!processEnded(pid)) process.kill(pid, 'SIGKILL');
  });
  const client = await connectClient(port);
  client.on('error', () => {});
  // allowHalfOpen: the worker's close shows as 'end' (or 'close' if it resets).
  const clientEnded = new Promise((resolve) => {
    client.once('end', resolve);
    client.once('close', resolve);
  });
  assert.equal(await echo(client, 'before'), 'before');

  const killedAt = Date.now();
  unhitch.kill('SIGKILL');
  // The workers' log lines still reach the pipe the primary shared with them.
  const gone = await unhitch.waitForLogs((line) => line.code === 'UNHITCH_PRIMARY_GONE', 2);
  assert.deepEqual(
    gone.map((line) => line.graceMs),
    [drainTimeoutMs, drainTimeoutMs],
  );
  // The stream keeps flowing well past the second in which it used to be cut.
  let trips = 0;
  for (; trips < 200 && Date.now() - killedAt < 2_000; trips++) {
    assert.equal(await echo(client, `t${trips}`), `t${trips}`, `round trip ${trips}`);
    await sleep(20);
  }
  assert.ok(Date.now() - killedAt >= 2_000, `${trips} round trips`);
  // Nothing new: the workers closed their listening sockets, the primary's died with it.
  await eventually(
    () =>
      connectClient(port).then(
        (socket) => void socket.destroy(),
        (error: NodeJS.ErrnoException) => error.code === 'ECONNREFUSED' || undefined,
      ),
    5_000,
    'new connections refused',
  );
  // At drain-timeout the workers close what is left and exit: none lingers.
  await clientEnded;
  await eventually(
    () => workers.every(processEnded) || undefined,
    drainTimeoutMs + 15_000,
    'both workers exited',
  );
  const endedAfter = Date.now() - killedAt;
  assert.ok(endedAfter >= drainTimeoutMs, `workers ended ${endedAfter} ms after the kill`);
  // Every holder of the output pipe is gone: all the workers' lines have been read.
  await unhitch.exited();
  const closedByDrain = unhitch.lines.filter(
    (line) => line.role === 'worker' && line.reason === 'shutdown',
  );
  assert.equal(closedByDrain.length, 1, 'the open connection was closed by the drain');
});

test('kill -9 of the primary during a reload drain: each worker says UNHITCH_PRIMARY_GONE once, with the grace it really has', async (t) => {
  const reloadDrainMs = 3_000;
  const drainTimeoutMs = 60_000;
  const { unhitch, port } = await startCluster(t, {
    workers: 1,
    args: [
      `--drain-timeout=${drainTimeoutMs / 1000}`,
      `--reload-drain-timeout=${reloadDrainMs / 1000}`,
    ],
  });
  const [oldWorker] = unhitch.workerPids();
  assert.ok(oldWorker);
  const client = await connectClient(port);
  client.on('error', () => {});
  t.after(() => client.destroy());
  assert.equal(await echo(client, 'before'), 'before');
  unhitch.kill('SIGHUP');
  await unhitch.waitForLog((line) => line.msg === 'reloaded', 30_000);
  const workers = unhitch.workerPids();
  assert.equal(workers.length, 2, 'the old worker drains beside the new one');
  t.after(() => {
    for (const pid of workers) if (!processEnded(pid)) process.kill(pid, 'SIGKILL');
  });

  unhitch.kill('SIGKILL');
  // Every holder of the output pipe gone: every worker line has been read.
  await unhitch.exited();
  const gone = unhitch.lines.filter((line) => line.code === 'UNHITCH_PRIMARY_GONE');
  assert.deepEqual(gone.map((line) => line.pid).sort(), [...workers].sort(), 'one line per worker');
  const byPid = new Map(gone.map((line) => [line.pid, line]));
  // The old generation keeps its reload deadline, the sooner one; the new one has drain-timeout.
  const oldGrace = Number(byPid.get(oldWorker)?.graceMs);
  assert.ok(oldGrace > 0 && oldGrace <= reloadDrainMs, `old worker says graceMs ${oldGrace}`);
  const [newWorker] = workers.filter((pid) => pid !== oldWorker);
  assert.equal(byPid.get(newWorker)?.graceMs, drainTimeoutMs);
  // The pipe closes when a worker's last thread drops its descriptors, a moment before the
  // kernel turns it into a zombie: wait for that moment rather than assume it passed.
  await eventually(() => workers.every(processEnded) || undefined, 5_000, 'both workers ended');
});

test('SIGHUP: new certificate for new connections, an open WebSocket keeps working', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-reload-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const tracker = new TrackerServer({ udp: false, http: false, ws: true, stats: false });
  const trackerPort = await freePort();
  await new Promise<void>((resolve) => tracker.listen(trackerPort, '127.0.0.1', resolve));
  t.after(() => tracker.close());
  const port = await freePort();
  const first = makeCertificate('reload-one', ['localhost']);
  const second = makeCertificate('reload-two', ['localhost']);
  copyFileSync(first.certPath, join(dir, 'cert.crt'));
  copyFileSync(first.keyPath, join(dir, 'key.pem'));
  const configPath = join(dir, 'hitch.conf');
  writeFileSync(
    configPath,
    `frontend = "[127.0.0.1]:${port}"\nbackend = "[127.0.0.1]:${trackerPort}"\nworkers = 1\nlog-level = "debug"\n` +
      `pem-file = {\n  cert = "${join(dir, 'cert.crt')}"\n  private-key = "${join(dir, 'key.pem')}"\n}\n`,
  );
  const unhitch = startUnhitch([`--config=${configPath}`]);
  t.after(() => unhitch.kill('SIGKILL'));
  await unhitch.waitForLogs(isWorkerReady, 1);

  const socket = new WebSocket(`wss://127.0.0.1:${port}`, { rejectUnauthorized: false });
  t.after(() => socket.terminate());
  await once(socket, 'open');
  const announce = (): Promise<AnnounceResponse> => announceOn(socket);
  assert.equal((await announce()).action, 'announce');
  const fingerprintOf = async (): Promise<string> => {
    const client = await connectClient(port);
    const fingerprint = client.getPeerCertificate().fingerprint256;
    client.destroy();
    return fingerprint;
  };
  const before = await fingerprintOf();

  copyFileSync(second.certPath, join(dir, 'cert.crt'));
  copyFileSync(second.keyPath, join(dir, 'key.pem'));
  unhitch.kill('SIGHUP');
  await unhitch.waitForLog((line) => line.msg === 'reloaded');
  const after = await fingerprintOf();
  assert.notEqual(after, before, 'new connections see the new certificate');
  assert.equal((await announce()).action, 'announce', 'the open WebSocket still works');

  // A broken config is refused and the running one keeps serving.
  writeFileSync(configPath, 'frontend = {\n');
  unhitch.kill('SIGHUP');
  const rejected = await unhitch.waitForLog(
    (line) => line.msg === 'reload rejected; the running configuration stays',
  );
  assert.equal(rejected.code, 'UNHITCH_RELOAD_REJECTED');
  const err = rejected.err as { message?: string; code?: string };
  assert.match(String(err.message), /hitch\.conf:2:1/);
  assert.equal(err.code, 'UNHITCH_CONFIG_SYNTAX');
  assert.equal(await fingerprintOf(), after);
  assert.equal((await announce()).action, 'announce');
});

test('SIGTERM drains: an in-flight 16 MiB transfer completes, then the process exits 0', async (t) => {
  const total = 16 * 1024 * 1024;
  const payload = randomBytes(total);
  const backend = (socket: Socket): void => {
    // Slowly, so the transfer is still running when SIGTERM arrives.
    let offset = 0;
    const timer = setInterval(() => {
      socket.write(payload.subarray(offset, offset + 1024 * 1024));
      offset += 1024 * 1024;
      if (offset >= total) {
        clearInterval(timer);
        socket.end();
      }
    }, 60);
    socket.once('close', () => clearInterval(timer));
  };
  const { unhitch, port } = await startCluster(t, {
    workers: 1,
    args: ['--drain-timeout=30'],
    backend,
  });

  const client = await connectClient(port);
  const received = readAll(client);
  // The transfer is under way before the stop.
  await once(client, 'data');
  unhitch.kill('SIGTERM');
  await unhitch.waitForLog((line) => line.msg === 'draining');
  // New connections are refused while the old one finishes (each worker closes its
  // listener on the primary's message, a moment after the log line).
  await eventually(
    () =>
      connectClient(port).then(
        (socket) => void socket.destroy(),
        () => true,
      ),
    5_000,
    'new connections refused',
  );
  await assert.rejects(connectClient(port), 'accepting stopped during the drain');
  const bytes = await received;
  client.end();
  assert.equal(bytes.length, total);
  assert.equal(
    createHash('sha256').update(bytes).digest('hex'),
    createHash('sha256').update(payload).digest('hex'),
  );
  assert.equal(await unhitch.exited(), 0);
});

test('session tickets resume on another worker and after a restart with ticket-key-file (TLS 1.3 and 1.2)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-tickets-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const keyFile = join(dir, 'tickets.key');
  const started = await startCluster(t, { workers: 2, args: [`--ticket-key-file=${keyFile}`] });
  const { port, args } = started;
  let unhitch = started.unhitch;
  t.after(() => unhitch.kill('SIGKILL'));

  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    // A session from one worker…
    const first = await connectClient(port, { maxVersion: version, minVersion: version });
    const session = await sessionOf(first);
    const issuer = await servingPid(unhitch.lines, first.localPort ?? 0);
    first.destroy();
    // …resumed on the other (accept distribution is the kernel's: try until it lands there).
    let resumedElsewhere = false;
    for (let attempt = 0; attempt < 60 && !resumedElsewhere; attempt++) {
      const again = await connectClient(port, {
        session,
        maxVersion: version,
        minVersion: version,
      });
      const pid = await servingPid(unhitch.lines, again.localPort ?? 0);
      if (pid !== issuer) {
        assert.ok(
          again.isSessionReused(),
          `${version}: ticket from worker ${issuer} not resumed on ${pid}`,
        );
        resumedElsewhere = true;
      }
      again.destroy();
    }
    assert.ok(resumedElsewhere, `${version}: never reached the other worker`);
  }

  const sessions = new Map<string, Buffer>();
  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    const client = await connectClient(port, { maxVersion: version, minVersion: version });
    sessions.set(version, await sessionOf(client));
    client.destroy();
  }
  unhitch.kill('SIGTERM');
  assert.equal(await unhitch.exited(), 0);
  unhitch = startUnhitch(args);
  await unhitch.waitForLogs(isWorkerReady, 2);
  for (const [version, session] of sessions) {
    const client = await connectClient(port, {
      session,
      maxVersion: version as 'TLSv1.3',
      minVersion: version as 'TLSv1.3',
    });
    assert.ok(client.isSessionReused(), `${version}: not resumed after restart`);
    client.destroy();
  }
  unhitch.kill('SIGTERM');
  await unhitch.exited();
});

test('SIGHUP re-reads ticket-key-file: a ticket made with the new key resumes on a second instance started with that file; a bad file keeps the key', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-ticket-reload-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const keyFile = join(dir, 'tickets.key');
  writeFileSync(keyFile, randomBytes(48), { mode: 0o600 });
  const shared = [`--ticket-key-file=${keyFile}`, '--ticket-rotation=0'];
  const { unhitch: a, port: portA } = await startCluster(t, { workers: 1, args: shared });
  const ticketFromA = async (): Promise<Buffer> => {
    const client = await connectClient(portA, { maxVersion: 'TLSv1.3', minVersion: 'TLSv1.3' });
    const session = await sessionOf(client);
    client.destroy();
    return session;
  };
  const resumesOnB = async (session: Buffer): Promise<boolean> => {
    const client = await connectClient(portB, {
      session,
      maxVersion: 'TLSv1.3',
      minVersion: 'TLSv1.3',
    });
    const reused = client.isSessionReused();
    client.destroy();
    return reused;
  };
  const reloads = () => a.lines.filter((line) => line.msg === 'reloaded').length;
  const reloadA = async (): Promise<void> => {
    const before = reloads();
    a.kill('SIGHUP');
    await a.waitForLogs((line) => line.msg === 'reloaded', before + 1, 30_000);
  };
  const oldTicket = await ticketFromA();

  // The new key, written the way an operator distributes it: atomically, then SIGHUP.
  writeFileSync(`${keyFile}.new`, randomBytes(48), { mode: 0o600 });
  renameSync(`${keyFile}.new`, keyFile);
  await reloadA();
  await a.waitForLog((line) => line.msg === 'session ticket key loaded from file');
  const { port: portB } = await startCluster(t, { workers: 1, args: shared });
  assert.equal(await resumesOnB(oldTicket), false, 'a ticket of the old key does not resume on B');
  assert.ok(await resumesOnB(await ticketFromA()), 'a ticket of the new key resumes on B');

  // A half-written file: logged, the key in use stays, nothing stops.
  writeFileSync(keyFile, 'not a key');
  await reloadA();
  const refused = await a.waitForLog((line) => line.code === 'UNHITCH_TICKET_KEY_RELOAD');
  assert.equal(refused.file, keyFile);
  assert.equal(a.child.exitCode, null, 'A still runs');
  assert.ok(await resumesOnB(await ticketFromA()), 'A kept the key B has');
});

/** TLS 1.3 delivers tickets after the handshake; wait for one. TLS 1.2 has it at once. */
async function sessionOf(client: TLSSocket): Promise<Buffer> {
  if (client.getProtocol() === 'TLSv1.2') {
    const session = client.getSession();
    assert.ok(session);
    return session;
  }
  const [session] = (await once(client, 'session')) as [Buffer];
  return session;
}

test('pinning: under taskset -c 1 every thread of every worker stays on CPU 1', async (t) => {
  if (!readAllowedCpus('self').includes(1)) {
    t.skip('this machine has no CPU 1');
    return;
  }
  const { unhitch } = await startCluster(t, { wrapper: ['taskset', '-c', '1'] });
  // No --workers: one per CPU of the inherited mask, i.e. one.
  // 'worker ready' is logged once the worker is pinned; threads it starts later inherit.
  await unhitch.waitForLogs(isWorkerReady, 1);
  const workers = unhitch.workerPids();
  assert.equal(workers.length, 1);
  for (const pid of workers) {
    const threads = readThreadAffinities(pid);
    assert.ok(threads.size > 1, 'a node worker has several threads');
    for (const [tid, cpus] of threads)
      assert.deepEqual(cpus, [1], `thread ${tid} of worker ${pid}`);
  }
});

test('pinning: two workers on a two-CPU mask take one CPU each', async (t) => {
  if (!readAllowedCpus('self').includes(1)) {
    t.skip('this machine has no CPU 1');
    return;
  }
  const { unhitch } = await startCluster(t, { workers: 2, wrapper: ['taskset', '-c', '0,1'] });
  const cpus = unhitch
    .workerPids()
    .map((pid) => [...new Set([...readThreadAffinities(pid).values()].map((set) => set.join(',')))])
    .map((distinct) => {
      assert.equal(distinct.length, 1, 'all threads of a worker share one CPU');
      return distinct[0];
    })
    .sort();
  assert.deepEqual(cpus, ['0', '1']);
});

/** A TLS client, or undefined when it fails or is still waiting after `timeoutMs`. */
async function tryConnect(port: number, timeoutMs: number): Promise<TLSSocket | undefined> {
  const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false });
  socket.on('error', () => {});
  const outcome = await Promise.race([
    once(socket, 'secureConnect').then(
      () => 'secure' as const,
      () => 'failed' as const,
    ),
    once(socket, 'close').then(() => 'failed' as const),
    sleep(timeoutMs).then(() => 'waiting' as const),
  ]);
  if (outcome === 'secure') return socket;
  socket.destroy();
  return undefined;
}

test('EMFILE back-off, one worker: a new client waits in the backlog (never refused) and is served once fds are free', async (t) => {
  const { unhitch, port } = await startCluster(t, {
    workers: 1,
    wrapper: ['prlimit', '--nofile=64:64'],
  });

  const keeper = await connectClient(port);
  assert.equal(await echo(keeper, 'before'), 'before');
  // Hold connections (two descriptors each in the worker) until it runs out.
  const flood: TLSSocket[] = [];
  t.after(() => {
    for (const socket of flood) socket.destroy();
  });
  const exhausted = (line: UnhitchLogLine) => line.reason === 'fd_exhausted';
  for (let index = 0; index < 60 && !unhitch.lines.some(exhausted); index++) {
    const socket = await tryConnect(port, 1_000);
    if (socket) flood.push(socket);
  }
  await unhitch.waitForLog(exhausted, 5_000, 'the fd_exhausted log line');

  // While the descriptors stay exhausted the worker accepts nothing, but the socket is
  // still there: the kernel completes the TCP handshake and queues the client.
  const waiting = netConnect({ host: '127.0.0.1', port });
  const queued = await once(waiting, 'connect').then(
    () => 'connected',
    (error: NodeJS.ErrnoException) => error.code ?? 'error',
  );
  assert.equal(queued, 'connected', 'a client arriving during the back-off is not refused');
  const waitingTls = tlsConnect({ socket: waiting, rejectUnauthorized: false });
  const waitingSecure = once(waitingTls, 'secureConnect');
  assert.equal(await echo(keeper, 'during'), 'during', 'an existing connection kept working');

  for (const socket of flood.splice(0)) socket.destroy();
  await waitingSecure;
  assert.equal(await echo(waitingTls, 'queued'), 'queued', 'the queued client is served');
  waitingTls.destroy();
  const after = await connectClient(port);
  assert.equal(await echo(after, 'after'), 'after', 'accepting again once fds are free');
  after.destroy();
  keeper.destroy();
  assert.equal(
    unhitch.lines.filter((line) => line.msg === 'worker died; restarting').length,
    0,
    'no worker died',
  );
});

test('metrics endpoint: Prometheus numbers match the traffic sent', async (t) => {
  const metricsPort = await freePort();
  const { unhitch, port } = await startCluster(t, {
    workers: 2,
    args: [`--metrics=127.0.0.1:${metricsPort}`],
  });
  assert.equal(
    unhitch.lines.filter((line) => line.msg === 'metrics endpoint listening').length,
    1,
    'the metrics endpoint is announced once',
  );

  const connections = 5;
  const bytesEach = 3000;
  for (let index = 0; index < connections; index++) {
    const client = await connectClient(port);
    const reply = readAll(client);
    client.end(Buffer.alloc(bytesEach, 7));
    assert.equal((await reply).length, bytesEach);
  }
  const scrape = (): Promise<string> =>
    new Promise<string>((resolve, reject) => {
      httpGet(`http://127.0.0.1:${metricsPort}/metrics`, (response) => {
        let body = '';
        response.setEncoding('utf8').on('data', (chunk: string) => {
          body += chunk;
        });
        response.once('end', () => resolve(body));
      }).once('error', reject);
    });
  // Workers count a connection when it closes on their side, a moment after the client's.
  const text = await eventually(
    async () => {
      const page = await scrape();
      return /^unhitch_active_connections 0$/m.test(page) ? page : undefined;
    },
    5_000,
    'every connection closed in the metrics',
  );
  const value = (series: string): number => {
    const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `));
    assert.ok(line, `no series ${series} in:\n${text.slice(0, 2000)}`);
    return Number(line.split(' ')[1]);
  };
  assert.equal(value('unhitch_connections_accepted_total'), connections);
  assert.equal(value('unhitch_handshakes_total{kind="full"}'), connections);
  assert.equal(
    value('unhitch_bytes_total{direction="client_to_backend"}'),
    connections * bytesEach,
  );
  assert.equal(
    value('unhitch_bytes_total{direction="backend_to_client"}'),
    connections * bytesEach,
  );
  assert.equal(value('unhitch_active_connections'), 0);
});
