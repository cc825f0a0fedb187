/**
 * The metrics endpoint is read by no root process: the primary binds the loopback socket
 * and gathers the numbers, the unprivileged services process accepts the scraper's
 * connection and parses its request (seen from the kernel: which process holds the
 * server end of a live metrics connection). And the endpoint is held small: a silent
 * connection is closed after seconds.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { type TestContext, test } from 'node:test';
import { METRICS_IDLE_TIMEOUT_MS } from '../../src/ops/metrics-http.js';
import { startCluster } from '../helpers/cluster.js';
import { loopbackSocketInode, processIdentity, socketOwners } from '../helpers/proc-net.js';
import { eventually } from '../kit/eventually.js';
import { freePort } from '../kit/ports.js';

/** How long past the idle timeout a closed connection may take (node checks every second). */
const CLOSE_SLACK_MS = 10_000;

async function startWithMetrics(t: TestContext) {
  const metricsPort = await freePort();
  const { unhitch } = await startCluster(t, {
    workers: 1,
    args: [`--metrics=127.0.0.1:${metricsPort}`],
  });
  return { unhitch, metricsPort };
}

async function connected(port: number): Promise<Socket> {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  return socket;
}

/** GET /metrics on a kept-alive connection; the whole response once its body is in. */
function scrape(socket: Socket): Promise<string> {
  return new Promise((resolve) => {
    let received = '';
    const onData = (chunk: Buffer): void => {
      received += chunk.toString('latin1');
      if (/\r\n0\r\n\r\n$/.test(received)) {
        socket.off('data', onData);
        resolve(received);
      }
    };
    socket.on('data', onData);
    socket.write('GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n');
  });
}

test('metrics: the scraper connection is accepted by an unprivileged child, never by root', async (t) => {
  if (process.getuid?.() !== 0) {
    t.skip('needs root: the point is what the root primary does not do');
    return;
  }
  const { unhitch, metricsPort } = await startWithMetrics(t);
  const client = await connected(metricsPort);
  t.after(() => client.destroy());
  const response = await scrape(client);
  assert.match(response, /^HTTP\/1\.1 200/);
  assert.match(response, /unhitch_connections_accepted_total/, 'the workers’ numbers');
  assert.match(response, /unhitch_certificate_expiry_seconds\{/, 'the primary’s own');
  const owners = await eventually(
    () => {
      const inode = loopbackSocketInode(metricsPort, client.localPort as number);
      const found = inode === undefined ? [] : socketOwners(inode);
      return found.length > 0 ? found : undefined;
    },
    10_000,
    'the process holding the metrics connection',
  );
  assert.equal(owners.length, 1, `one process holds the socket: ${owners.join(', ')}`);
  const [pid] = owners as [number];
  assert.notEqual(pid, unhitch.child.pid, 'not the primary');
  const { uids, ppid } = processIdentity(pid);
  assert.equal(ppid, unhitch.child.pid, 'a child of the primary');
  assert.ok(uids.length === 4 && uids.every((uid) => uid !== 0), `uids ${uids.join(' ')}`);
  const services = unhitch.lines.find((line) => line.msg === 'services process ready');
  assert.equal(services?.pid, pid, 'the services process');
});

test('metrics: a silent connection is closed after seconds, not minutes', async (t) => {
  const { metricsPort } = await startWithMetrics(t);
  const silent = await connected(metricsPort);
  t.after(() => silent.destroy());
  silent.on('error', () => {});
  const started = Date.now();
  const bound = METRICS_IDLE_TIMEOUT_MS + CLOSE_SLACK_MS;
  const closed = once(silent, 'close');
  let timer: NodeJS.Timeout | undefined;
  // Bounded, so the old behaviour fails here rather than at the test timeout.
  const gaveUp = new Promise((resolve) => {
    timer = setTimeout(resolve, bound);
  });
  await Promise.race([closed, gaveUp]);
  clearTimeout(timer);
  const tookMs = Date.now() - started;
  assert.ok(
    silent.closed && tookMs < bound,
    `closed after ${tookMs} ms (node's defaults held such a connection for a minute)`,
  );
});

test('metrics: while the services process restarts, a scrape waits and is answered by the new one', async (t) => {
  const { unhitch, metricsPort } = await startWithMetrics(t);
  const first = unhitch.lines.find((line) => line.msg === 'services process ready');
  assert.ok(typeof first?.pid === 'number');
  process.kill(first.pid, 'SIGKILL');
  await unhitch.waitForLog((line) => line.msg === 'services process died; restarting', 10_000);
  // Nothing serves the port now: the primary's copy keeps it bound and listening.
  const client = await connected(metricsPort);
  t.after(() => client.destroy());
  const response = await scrape(client);
  assert.match(response, /^HTTP\/1\.1 200/);
  assert.match(response, /unhitch_connections_accepted_total/);
  const ready = unhitch.lines.filter((line) => line.msg === 'services process ready');
  assert.equal(ready.length, 2, 'answered by the restarted services process');
  assert.equal(
    unhitch.lines.filter((line) => line.msg === 'metrics endpoint listening').length,
    1,
    'announced once',
  );
});
