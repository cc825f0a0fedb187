/**
 * Several nodes: two unhitch instances (127.0.0.2 and 127.0.0.3) behind Debian's HAProxy in
 * TCP mode sending PROXY v2, unhitch with proxy-proxy and forwarded-for, bittorrent-tracker
 * (trustProxy) behind both. The tracker sees the real client address; a session ticket
 * issued by one node resumes on the other through a shared ticket-key-file; one node is
 * killed mid-run and, once HAProxy's health check has taken it out, every WebTorrent
 * announce succeeds on the other. Runs inside a loopback-only network namespace.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import {
  insideLoopbackNamespace,
  nonLoopbackInterfaces,
  runInLoopbackNamespace,
  skipUnlessAvailable,
  toolMissing,
} from '../helpers/loopback-namespace.js';
import {
  type AnnounceResponse,
  announceOnce,
  startRecordingTracker,
} from '../helpers/webtorrent.js';
import { makeCertificate } from '../kit/pki.js';
import { freePort } from '../kit/ports.js';
import { startUnhitch, type UnhitchProcess } from '../kit/unhitch-process.js';

const NODES = ['127.0.0.2', '127.0.0.3'] as const;
/** Clients connect from here; HAProxy connects to the nodes from HAPROXY_SOURCE. */
const CLIENT_ADDRESS = '127.0.0.9';
const HAPROXY_SOURCE = '127.0.0.5';

/** One WebTorrent announce (the browser's first message) over wss://, from `localAddress`. */
function announce(url: string, ca: Buffer, localAddress: string): Promise<AnnounceResponse> {
  return announceOnce(url, { ca, localAddress, offer: false });
}

/** A TLS session with `node` directly, as HAProxy would open it: PROXY v2 header first. */
async function handshakeVia(
  node: string,
  port: number,
  ca: Buffer,
  session?: Buffer,
): Promise<{ resumed: boolean; ticket: Buffer }> {
  // v2 PROXY TCP4 127.0.0.9:40000 -> node:443.
  const header = Buffer.concat([
    Buffer.from('0d0a0d0a000d0a515549540a2111000c', 'hex'),
    Buffer.from([127, 0, 0, 9]),
    Buffer.from(node.split('.').map(Number)),
    Buffer.from('9c4001bb', 'hex'),
  ]);
  const raw = netConnect(port, node);
  await once(raw, 'connect');
  raw.write(header);
  const client = tlsConnect({
    socket: raw,
    ca,
    servername: 'localhost',
    ...(session ? { session } : {}),
  });
  // TLS 1.3 tickets come after the handshake: the socket must be read to see them.
  client.resume();
  const ticketArrives = once(client, 'session');
  await once(client, 'secureConnect');
  const resumed = client.isSessionReused();
  // A resumed handshake need not bring a new ticket.
  const [ticket] = session ? [session] : ((await ticketArrives) as [Buffer]);
  client.destroy();
  return { resumed, ticket };
}

interface HaproxyProcess {
  readonly child: ChildProcess;
  /** Resolves when HAProxy logs that `server` went DOWN. */
  down(server: string): Promise<void>;
}

function startHaproxy(configPath: string): HaproxyProcess {
  const child = spawn('haproxy', ['-db', '-f', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const waiters: Array<{ server: string; resolve: () => void }> = [];
  const onData = (chunk: Buffer): void => {
    output += chunk.toString('utf8');
    for (const waiter of waiters)
      if (output.includes(`be/${waiter.server} is DOWN`)) waiter.resolve();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  return {
    child,
    down: (server) =>
      new Promise<void>((resolve) => {
        if (output.includes(`be/${server} is DOWN`)) resolve();
        else waiters.push({ server, resolve });
      }),
  };
}

if (insideLoopbackNamespace()) {
  test('HAProxy (PROXY v2) in front of two unhitch nodes: real client address, tickets resume across nodes, a killed node is taken out without a failed announce', {
    timeout: 60_000,
  }, async (t) => {
    assert.deepEqual(nonLoopbackInterfaces(), [], 'only loopback in this namespace');
    const cert = makeCertificate('nodes', ['localhost']);
    const ca = readFileSync(cert.certPath);
    const dir = mkdtempSync(join(tmpdir(), 'unhitch-nodes-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const ticketKeyFile = join(dir, 'ticket.key');
    writeFileSync(ticketKeyFile, randomBytes(48), { mode: 0o600 });

    const tracker = await startRecordingTracker({ trustProxy: true });
    t.after(() => tracker.close());
    const port = await freePort();
    const nodes: UnhitchProcess[] = NODES.map((address) =>
      startUnhitch([
        `--frontend=[${address}]:${port}`,
        `--backend=[127.0.0.1]:${tracker.port}`,
        '--workers=1',
        '--proxy-proxy',
        '--forwarded-for=on',
        `--ticket-key-file=${ticketKeyFile}`,
        '--ticket-rotation=0',
        cert.combinedPath,
      ]),
    );
    for (const node of nodes) {
      t.after(() => {
        for (const pid of node.workerPids()) process.kill(pid, 'SIGKILL');
        node.kill('SIGKILL');
      });
    }
    await Promise.all(nodes.map((node) => node.waitForLog((line) => line.msg === 'worker ready')));

    const balancerPort = await freePort();
    const config = join(dir, 'haproxy.cfg');
    writeFileSync(
      config,
      [
        'defaults',
        '  mode tcp',
        '  timeout connect 2s',
        '  timeout client 30s',
        '  timeout server 30s',
        'frontend fe',
        `  bind 127.0.0.1:${balancerPort}`,
        '  default_backend be',
        'backend be',
        '  balance roundrobin',
        `  source ${HAPROXY_SOURCE}`,
        ...NODES.map(
          (address, n) =>
            `  server node${n} ${address}:${port} send-proxy-v2 check inter 200ms fall 1 rise 1`,
        ),
        '',
      ].join('\n'),
    );
    const haproxy = startHaproxy(config);
    t.after(() => haproxy.child.kill('SIGKILL'));
    const url = `wss://127.0.0.1:${balancerPort}/`;
    // HAProxy is up once it accepts: the first announce may race its bind.
    for (let attempt = 0; ; attempt++) {
      try {
        await announce(url, ca, CLIENT_ADDRESS);
        break;
      } catch (error) {
        if (attempt > 50) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }

    // The real client address: one announce lands on each node (round robin).
    for (const response of await Promise.all([
      announce(url, ca, CLIENT_ADDRESS),
      announce(url, ca, CLIENT_ADDRESS),
    ])) {
      assert.equal(response['failure reason'], undefined);
    }
    assert.ok(tracker.started.length >= 3);
    assert.deepEqual(
      [...new Set(tracker.started.map((entry) => entry.ip))],
      [CLIENT_ADDRESS],
      'the tracker saw the client, not HAProxy nor unhitch',
    );

    // A ticket from node 0 resumes on node 1: the key file is shared.
    const first = await handshakeVia(NODES[0], port, ca);
    assert.equal(first.resumed, false);
    const second = await handshakeVia(NODES[1], port, ca, first.ticket);
    assert.equal(second.resumed, true, 'node 1 resumed the session node 0 issued');

    // Node 0 dies mid-run; once the health check has taken it out, nothing fails.
    const [victim] = nodes as [UnhitchProcess, UnhitchProcess];
    for (const pid of victim.workerPids()) process.kill(pid, 'SIGKILL');
    victim.kill('SIGKILL');
    await haproxy.down('node0');
    const before = tracker.started.length;
    const after = await Promise.allSettled(
      Array.from({ length: 8 }, () => announce(url, ca, CLIENT_ADDRESS)),
    );
    const failed = after.filter((result) => result.status === 'rejected');
    assert.deepEqual(failed, [], 'no announce failed after the switch');
    assert.equal(tracker.started.length - before, 8, 'the tracker got every announce');
  });
} else {
  test('several unhitch nodes behind HAProxy, inside a network namespace with only loopback', {
    timeout: 120_000,
  }, async (t) => {
    const missing = toolMissing('haproxy', ['-v'], 'apt-get install haproxy');
    if (skipUnlessAvailable(t, missing)) return;
    await runInLoopbackNamespace(t, import.meta.url, 100_000);
  });
}
