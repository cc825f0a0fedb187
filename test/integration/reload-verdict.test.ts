/**
 * `unhitch --reload --pidfile=FILE` (the systemd unit's ExecReload): SIGHUP to the running
 * primary, then the verdict that primary publishes beside its pidfile, as the exit status
 * and one line. A good configuration reloads (0); a broken one is rejected (1, with the
 * parse error) and the old configuration keeps serving; new workers that cannot listen
 * fail the reload (1); no primary to ask is an error too (1).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { makeCertificate } from '../kit/pki.js';
import { freePort } from '../kit/ports.js';
import { closeBackend, connectClient, startBackend } from '../kit/proxy-fixture.js';
import { CLI, startUnhitch } from '../kit/unhitch-process.js';

const cert = makeCertificate('reload-verdict', ['localhost']);

interface Outcome {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** `unhitch --reload …` as systemd runs it: its own process, its exit status. */
async function reloadCommand(args: readonly string[]): Promise<Outcome> {
  const child = spawn(process.execPath, [CLI, '--reload', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const [status] = (await once(child, 'close')) as [number | null];
  return { status, stdout, stderr };
}

async function echoes(port: number): Promise<boolean> {
  const client = await connectClient(port);
  try {
    client.write('ping');
    const [reply] = (await once(client, 'data')) as [Buffer];
    return reply.toString() === 'ping';
  } finally {
    client.destroy();
  }
}

test('--reload reports a good config as reloaded (0) and a broken one as rejected (1)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-verdict-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const backend = await startBackend((socket) => socket.pipe(socket));
  t.after(() => closeBackend(backend));
  const port = await freePort();
  const pidfile = join(dir, 'unhitch.pid');
  const configPath = join(dir, 'hitch.conf');
  const conf = (extra = ''): string =>
    `frontend = "[127.0.0.1]:${port}"\nbackend = "[127.0.0.1]:${backend.port}"\n` +
    `workers = 1\npidfile = "${pidfile}"\npem-file = "${cert.combinedPath}"\n${extra}`;
  writeFileSync(configPath, conf());
  const unhitch = startUnhitch([`--config=${configPath}`]);
  t.after(async () => {
    unhitch.kill();
    await unhitch.exited();
  });
  await unhitch.waitForLog((line) => line.msg === 'listening');

  const good = await reloadCommand([`--pidfile=${pidfile}`]);
  assert.equal(good.status, 0, good.stderr);
  assert.equal(good.stdout, 'unhitch: reloaded (generation 2)\n');

  writeFileSync(configPath, conf('workers 4\n'));
  const broken = await reloadCommand([`--pidfile=${pidfile}`]);
  assert.equal(broken.status, 1);
  assert.match(
    broken.stderr,
    /^unhitch: reload rejected, the running configuration stays: .*hitch\.conf:6:\d+: .* \[UNHITCH_CONFIG_SYNTAX\]\n$/,
  );
  assert.ok(await echoes(port), 'the running configuration still serves');

  // The pidfile may come from --config too; the verdict is the next reload's, not the last.
  writeFileSync(configPath, conf());
  const again = await reloadCommand([`--config=${configPath}`]);
  assert.equal(again.status, 0, again.stderr);
  assert.equal(again.stdout, 'unhitch: reloaded (generation 3)\n');
  assert.ok(await echoes(port));

  unhitch.kill();
  assert.equal(await unhitch.exited(), 0);
  assert.equal(existsSync(join(dir, 'unhitch.reload')), false, 'the status file goes with it');
});

test('--reload reports new workers that cannot listen as a failed reload (1)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-verdict-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const backend = await startBackend((socket) => socket.pipe(socket));
  t.after(() => closeBackend(backend));
  // Another program holds the port the new configuration adds.
  const squatter = createServer().listen(0, '127.0.0.1');
  await once(squatter, 'listening');
  t.after(() => squatter.close());
  const taken = (squatter.address() as AddressInfo).port;
  const port = await freePort();
  const pidfile = join(dir, 'run.pid');
  const configPath = join(dir, 'hitch.conf');
  const conf = (extra = ''): string =>
    `frontend = "[127.0.0.1]:${port}"\nbackend = "[127.0.0.1]:${backend.port}"\n` +
    `workers = 1\npem-file = "${cert.combinedPath}"\n${extra}`;
  writeFileSync(configPath, conf());
  const unhitch = startUnhitch([`--config=${configPath}`, `--pidfile=${pidfile}`]);
  t.after(async () => {
    unhitch.kill();
    await unhitch.exited();
  });
  await unhitch.waitForLog((line) => line.msg === 'listening');

  writeFileSync(configPath, conf(`frontend = "[127.0.0.1]:${taken}"\n`));
  const failed = await reloadCommand([`--pidfile=${pidfile}`]);
  assert.equal(failed.status, 1, failed.stdout);
  assert.match(failed.stderr, /^unhitch: reload failed: .* \[UNHITCH_RELOAD_FAILED\]\n$/);
  assert.ok(await echoes(port), 'the running configuration still serves');
});

test('--reload with no unhitch behind the pidfile exits 1 and says why', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-verdict-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const missing = await reloadCommand([`--pidfile=${join(dir, 'none.pid')}`]);
  assert.equal(missing.status, 1);
  assert.match(
    missing.stderr,
    /cannot read pidfile .*none\.pid \(ENOENT\).* \[UNHITCH_RELOAD_REQUEST\]\n$/,
  );
  // A pid that no process has (the kernel's pid_max is at most 2^22).
  const stale = join(dir, 'stale.pid');
  writeFileSync(stale, '4194305\n');
  const gone = await reloadCommand([`--pidfile=${stale}`]);
  assert.equal(gone.status, 1);
  assert.match(
    gone.stderr,
    /cannot signal unhitch \(pid 4194305 .*ESRCH \[UNHITCH_RELOAD_REQUEST\]\n$/,
  );
  const none = await reloadCommand([]);
  assert.equal(none.status, 1);
  assert.match(none.stderr, /--reload needs .*pidfile.* \[UNHITCH_CONFIG_MISSING\]/);
});

test('--reload does not signal a live process that is not unhitch (a stale pidfile)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-verdict-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // The pid a primary killed with SIGKILL left behind, now another program's: SIGHUP's
  // default action would end it.
  const other = spawn('sleep', ['60'], { stdio: 'ignore' });
  t.after(() => other.kill('SIGKILL'));
  await once(other, 'spawn');
  const pidfile = join(dir, 'unhitch.pid');
  writeFileSync(pidfile, `${other.pid}\n`);
  const foreign = await reloadCommand([`--pidfile=${pidfile}`]);
  assert.equal(foreign.status, 1);
  assert.match(
    foreign.stderr,
    new RegExp(
      `pid ${other.pid} from .*unhitch\\.pid is not unhitch \\(sleep 60\\).* \\[UNHITCH_RELOAD_REQUEST\\]\\n$`,
    ),
  );
  assert.equal(other.exitCode, null, 'still running');
  assert.equal(other.signalCode, null, 'not signalled');
});
