/**
 * Started as root with `user`/`group`, no client byte is handled as root: the worker's
 * socket only enters LISTEN (the kernel completes no client handshake before) once that
 * worker has switched to the configured user. Watched from outside, as tightly as this
 * process can poll: /proc/net/tcp for the LISTEN state, /proc/<worker>/status for the uid;
 * and from inside: a client that connects from the first instant is accepted by a worker
 * that reports (once, at its first accept) the configured uid and gid.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect as tlsConnect } from 'node:tls';
import { loopbackListenSockets } from '../helpers/proc-net.js';
import { makeCertificate } from '../kit/pki.js';
import { freePort } from '../kit/ports.js';
import { closeBackend, connectClient, startBackend } from '../kit/proxy-fixture.js';
import { CLI, runToExit, startUnhitch } from '../kit/unhitch-process.js';

const isRoot = process.getuid?.() === 0;

function accountId(file: '/etc/passwd' | '/etc/group', name: string): number {
  const fields = readFileSync(file, 'utf8')
    .split('\n')
    .map((line) => line.split(':'))
    .find((candidate) => candidate[0] === name);
  const id = Number(fields?.[2]);
  if (!Number.isInteger(id)) throw new Error(`no ${name} in ${file}`);
  return id;
}

/** The worker child of `parent`, looking only at pids above it (cheap enough to poll). */
function workerChild(parent: number): number | undefined {
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid <= parent) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) !== parent) continue;
      // node renames its main thread (comm "MainThread"): the command line is stable.
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('cluster/worker.js')) return pid;
    } catch {
      // gone already
    }
  }
  return undefined;
}

function effectiveUid(pid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/^Uid:\s+\d+\s+(\d+)/m.exec(status)?.[1]);
  } catch {
    return undefined; // exited
  }
}

interface StartedAsNobody {
  readonly unhitch: ReturnType<typeof startUnhitch>;
  readonly port: number;
  readonly second: number;
}

/**
 * The binary as root with --user=nobody --group=nogroup and two frontends: the worker
 * once listened on the first while still fetching the second (an event-loop turn in
 * which it accepted as root), then dropped privileges.
 */
async function startAsNobody(
  t: { after(fn: () => void): void },
  workers: number,
  stem: string,
): Promise<StartedAsNobody> {
  const backend = await startBackend((socket) => socket.pipe(socket));
  t.after(() => closeBackend(backend));
  const cert = makeCertificate(stem, ['localhost']);
  const port = await freePort();
  const second = await freePort();
  const unhitch = startUnhitch([
    `--frontend=[127.0.0.1]:${port}`,
    `--frontend=[127.0.0.1]:${second}`,
    `--backend=[127.0.0.1]:${backend.port}`,
    `--workers=${workers}`,
    '--user=nobody',
    '--group=nogroup',
    cert.combinedPath,
  ]);
  t.after(() => unhitch.kill('SIGKILL'));
  return { unhitch, port, second };
}

test('as root with user/group: the worker is nobody before its socket listens, and serves', {
  skip: isRoot ? false : 'needs root',
}, async (t) => {
  const nobody = accountId('/etc/passwd', 'nobody');
  accountId('/etc/group', 'nogroup');
  const { unhitch, port, second } = await startAsNobody(t, 1, 'privilege-drop');
  const primary = unhitch.child.pid as number;

  // The worker exists long before it listens (it loads its modules first).
  let worker: number | undefined;
  const deadline = Date.now() + 15_000;
  while (worker === undefined && Date.now() < deadline) {
    assert.equal(loopbackListenSockets(port), 0, 'nothing listens before the worker exists');
    worker = workerChild(primary);
    if (worker === undefined) await sleep(1);
  }
  assert.ok(worker !== undefined, 'a worker was forked');

  // Then poll without yielding: the first moment the port listens, whose uid is it?
  let samples = 0;
  let uidAtListen: number | undefined;
  while (Date.now() < deadline) {
    samples += 1;
    if (loopbackListenSockets(port) + loopbackListenSockets(second) > 0) {
      // Read right after LISTEN is seen: a worker that drops after listen() (as it once
      // did, behind a synchronous getent) is still root here, and a client could have
      // been accepted and handshaken by it.
      uidAtListen = effectiveUid(worker);
      break;
    }
  }
  assert.ok(uidAtListen !== undefined, 'the port came to listen');
  assert.equal(uidAtListen, nobody, `worker uid when its socket first listened (${samples} polls)`);

  await unhitch.waitForLog((line) => line.msg === 'worker ready');
  const client = await connectClient(port);
  client.write('as nobody');
  const [reply] = (await once(client, 'data')) as [Buffer];
  client.destroy();
  assert.equal(reply.toString(), 'as nobody');
  assert.equal(effectiveUid(worker), nobody);
  assert.equal(effectiveUid(primary), 0, 'the primary stays root (it binds on reload)');
  t.diagnostic(`${samples} polls until LISTEN; worker ${worker} uid ${uidAtListen}`);
});

/** Connects to `port` again and again from now on; resolves with the first TCP connection. */
async function firstConnection(port: number, deadline: number): Promise<Socket> {
  let attempts = 0;
  while (Date.now() < deadline && attempts < 200_000) {
    attempts += 1;
    const socket = netConnect({ host: '127.0.0.1', port });
    const connected = await once(socket, 'connect').then(
      () => true,
      () => false,
    );
    if (connected) return socket;
    socket.destroy();
  }
  throw new Error(`no connection to ${port} after ${attempts} attempts`);
}

test('as root with user/group: a client connecting from the first instant is accepted by a non-root worker', {
  skip: isRoot ? false : 'needs root',
}, async (t) => {
  const nobody = accountId('/etc/passwd', 'nobody');
  const nogroup = accountId('/etc/group', 'nogroup');
  const { unhitch, port } = await startAsNobody(t, 2, 'privilege-drop-client');

  // The first TCP connection the kernel completes, then a TLS handshake over it.
  const raw = await firstConnection(port, Date.now() + 15_000);
  const client = tlsConnect({ socket: raw, rejectUnauthorized: false, servername: 'localhost' });
  await once(client, 'secureConnect');
  client.write('first');
  const [reply] = (await once(client, 'data')) as [Buffer];
  client.destroy();
  assert.equal(reply.toString(), 'first');

  const accepted = await unhitch.waitForLog(
    (line) => line.msg === 'first connection accepted',
    5_000,
    'the worker reporting its first accept',
  );
  assert.equal(accepted.uid, nobody, 'uid of the worker at its first accept');
  assert.equal(accepted.gid, nogroup, 'gid of the worker at its first accept');
});

test('as root without user (or with only a group): the start exits 1, "Refusing to run workers as root."; --test exits 0 with that warning (Hitch)', {
  skip: isRoot ? false : 'needs root',
}, async () => {
  const cert = makeCertificate('privilege-drop-root', ['localhost']);
  const port = await freePort();
  const base = [`--frontend=[127.0.0.1]:${port}`, '--backend=[127.0.0.1]:9', '--workers=1'];
  for (const identity of [[], ['--group=nogroup'], ['--user=root']]) {
    const args = [...base, ...identity, cert.combinedPath];
    const start = await runToExit(process.execPath, [CLI, ...args], { timeoutMs: 30_000 });
    const startOutput = `${start.stdout}${start.stderr}`;
    assert.equal(start.status, 1, `start ${identity.join(' ')}: ${startOutput}`);
    assert.match(startOutput, /Refusing to run workers as root\./);
    assert.match(startOutput, /UNHITCH_ROOT_WORKERS/);
    assert.doesNotMatch(startOutput, /"msg":"listening"/);
    // Hitch's --test forks no worker, so it passes; a start with this config refuses.
    const check = await runToExit(process.execPath, [CLI, '--test', ...args]);
    assert.equal(check.status, 0, `--test ${identity.join(' ')}: ${check.stderr}`);
    assert.match(
      check.stderr,
      /^warning: a start .* would refuse: Refusing to run workers as root\./m,
    );
  }
});
