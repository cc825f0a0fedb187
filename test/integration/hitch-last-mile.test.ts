/**
 * The last visible differences from Hitch that scripts written for it trip over (issue
 * 22), each checked on the real binary without Hitch installed; the differential test
 * (hitch-differential.test.ts) holds the same scenarios against the real hitch.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import {
  chmodSync,
  closeSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseHitchConfigText } from '../../src/config/load.js';
import { makeSelfSigned } from '../../src/tls/selfsigned.js';
import { eventually } from '../kit/eventually.js';
import { freePort } from '../kit/ports.js';
import { CLI, runToExit } from '../kit/unhitch-process.js';

const isRoot = process.getuid?.() === 0;

function fixture(t: { after: (fn: () => void) => void }): { dir: string; pem: string } {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-last-mile-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const site = makeSelfSigned({ dir, stem: 'site' });
  chmodSync(site.combinedPath, 0o600);
  return { dir, pem: site.combinedPath };
}

const unhitch = (args: readonly string[], cwd?: string) =>
  runToExit(process.execPath, [CLI, ...args], { timeoutMs: 60_000, ...(cwd ? { cwd } : {}) });

test('--test as root without user exits 0 with one warning line that a start would refuse; the start still refuses', {
  skip: isRoot ? false : 'needs root (the refusal is about workers running as root)',
}, async (t) => {
  const { dir, pem } = fixture(t);
  const port = await freePort();
  const config = join(dir, 'hitch.conf');
  writeFileSync(
    config,
    `frontend = "[127.0.0.1]:${port}"\nbackend = "[127.0.0.1]:9"\npem-file = "${pem}"\nworkers = 1\n`,
  );
  const checked = await unhitch(['--test', `--config=${config}`]);
  assert.equal(checked.status, 0, checked.stderr);
  const refusals = checked.stderr.split('\n').filter((line) => /would refuse/.test(line));
  assert.equal(refusals.length, 1, checked.stderr);
  assert.match(refusals[0] ?? '', /^warning: .*Refusing to run workers as root\./);
  const started = await unhitch([`--config=${config}`]);
  assert.equal(started.status, 1);
  assert.match(started.stderr, /Refusing to run workers as root\..*\[UNHITCH_ROOT_WORKERS\]/);
});

test("a port in use: the start's stderr says why in Hitch's shape, {bind-socket}: Address already in use: [127.0.0.1]:PORT", async (t) => {
  const { pem } = fixture(t);
  const holder = createServer();
  holder.listen(0, '127.0.0.1');
  await once(holder, 'listening');
  t.after(() => holder.close());
  const port = (holder.address() as { port: number }).port;
  const started = await unhitch([
    `--frontend=[127.0.0.1]:${port}`,
    '--backend=[127.0.0.1]:9',
    '--workers=1',
    '--pin-workers=off',
    ...(isRoot ? ['--user=nobody'] : []),
    pem,
  ]);
  assert.equal(started.status, 1);
  const last = started.stderr.trim().split('\n').at(-1) ?? '';
  assert.equal(
    last,
    `unhitch: {bind-socket}: Address already in use: [127.0.0.1]:${port} [UNHITCH_WORKERS_FAILED]`,
  );
  // --test never binds (a deliberate exception, as Hitch's): the same config passes.
  const checked = await unhitch([
    '--test',
    `--frontend=[127.0.0.1]:${port}`,
    '--backend=[127.0.0.1]:9',
    ...(isRoot ? ['--user=nobody'] : []),
    pem,
  ]);
  assert.equal(checked.status, 0, checked.stderr);
});

test('a missing pem-file names the config file and line, as Hitch does', async (t) => {
  const { dir } = fixture(t);
  const config = join(dir, 'hitch.conf');
  const missing = join(dir, 'missing.pem');
  writeFileSync(
    config,
    `frontend = "[127.0.0.1]:4433"\nbackend = "[127.0.0.1]:9"\n\npem-file = "${missing}"\n`,
  );
  for (const args of [['--test'], []]) {
    const result = await unhitch([...args, `--config=${config}`, '--user=nobody']);
    assert.equal(result.status, 1);
    const last = result.stderr.trim().split('\n').at(-1) ?? '';
    assert.match(last, /^unhitch: .*hitch\.conf:4:1: /, last);
    assert.ok(last.includes(`'${missing}': No such file or directory`), last);
  }
});

test('Hitch 1.8: workers = auto and --workers=auto mean one worker per CPU; the 1.8 timeouts are Hitch flags in --help', async (t) => {
  const { dir, pem } = fixture(t);
  const parsed = parseHitchConfigText(
    `frontend = "[127.0.0.1]:4433"\npem-file = "${pem}"\nworkers = 3\nworkers = auto\n`,
    'auto.conf',
  );
  assert.equal(parsed.config.workers, undefined, 'auto: the per-CPU default');
  const flag = await unhitch(['--test', '--workers=auto', '--user=nobody', pem], dir);
  assert.equal(flag.status, 0, flag.stderr);
  const help = await unhitch(['--help']);
  const hitchPart = help.stdout.split('unhitch extensions:')[0] ?? '';
  assert.match(hitchPart, /--backend-connect-timeout/);
  assert.match(hitchPart, /--ssl-handshake-timeout/);
});

test('Hitch 1.8 (its issue 371): log-filename = /dev/stdout works, the workers (another user as root) logging there too', async (t) => {
  const { dir, pem } = fixture(t);
  const port = await freePort();
  // stdout a file, as a shell redirection makes it (node's own 'pipe' is a socket pair,
  // which /dev/stdout cannot reopen: ENXIO, for Hitch as well).
  const outPath = join(dir, 'stdout.log');
  const out = openSync(outPath, 'a');
  const child = spawn(
    process.execPath,
    [
      CLI,
      `--frontend=[127.0.0.1]:${port}`,
      '--backend=[127.0.0.1]:9',
      '--workers=1',
      '--pin-workers=off',
      '--log-filename=/dev/stdout',
      ...(isRoot ? ['--user=nobody'] : []),
      pem,
    ],
    { stdio: ['ignore', out, 'pipe'] },
  );
  closeSync(out);
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  const exited = once(child, 'exit');
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
  });
  const workerLine = await eventually(
    () => {
      if (child.exitCode !== null) throw new Error(`unhitch exited: ${stderr}`);
      return readFileSync(outPath, 'utf8')
        .split('\n')
        .find((line) => line.includes('"msg":"worker listening"'));
    },
    60_000,
    'a worker logging through /dev/stdout',
  );
  assert.match(workerLine, /"role":"worker"/);
});
