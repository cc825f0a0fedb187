/**
 * The `unhitch` binary as users run it: exit statuses and what it prints.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { makeSelfSigned } from '../../src/tls/selfsigned.js';

const ROOT = resolve(import.meta.dirname, '../../..');
const CLI = join(ROOT, 'dist/src/cli.js');

/**
 * hitch-compat.conf says `user = "hitch"` and `group = "hitch"`. A start or --test with
 * that user missing is refused (Hitch: "Invalid user"); these tests are about other
 * checks, so they name accounts that exist: as root nobody, otherwise the current ones.
 */
const AS_EXISTING_USER: readonly string[] =
  process.getuid?.() === 0
    ? ['--user=nobody', '--group=nogroup']
    : [
        `--user=${userInfo().username}`,
        `--group=${spawnSync('id', ['-gn'], { encoding: 'utf8' }).stdout.trim()}`,
      ];

function unhitch(args: readonly string[], cwd: string) {
  return spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: 'utf8', timeout: 20_000 });
}

test('--test accepts the benchmark hitch.conf unchanged', (t) => {
  // hitch-compat.conf names ./tmp/tls/{cert.crt,key.pem} relative to where it runs.
  const cwd = mkdtempSync(join(tmpdir(), 'unhitch-cli-'));
  t.after(() => rmSync(cwd, { recursive: true, force: true }));
  makeSelfSigned({ dir: join(cwd, 'tmp/tls'), stem: 'cert', keyFileName: 'key.pem' });
  const result = unhitch(
    ['--test', '--config', join(ROOT, 'hitch-compat.conf'), ...AS_EXISTING_USER],
    cwd,
  );
  assert.equal(result.status, 0, result.stderr);
  // Hitch prints its verdict on stderr ("hitch configuration looks ok.").
  assert.match(result.stderr, /^unhitch configuration looks ok/m);
});

test('--test with a missing certificate exits 1 naming the file', (t) => {
  const cwd = mkdtempSync(join(tmpdir(), 'unhitch-cli-'));
  t.after(() => rmSync(cwd, { recursive: true, force: true }));
  const result = unhitch(
    ['--test', '--config', join(ROOT, 'hitch-compat.conf'), ...AS_EXISTING_USER],
    cwd,
  );
  assert.equal(result.status, 1);
  assert.match(result.stderr, /cert\.crt/);
});

test('a syntax error exits 1 with file:line:column and what was expected', (t) => {
  const cwd = mkdtempSync(join(tmpdir(), 'unhitch-cli-'));
  t.after(() => rmSync(cwd, { recursive: true, force: true }));
  const file = join(cwd, 'bad.conf');
  writeFileSync(file, 'backend = "[127.0.0.1]:3001"\nworkers 4\n');
  const result = unhitch(['--test', '--config', file], cwd);
  assert.equal(result.status, 1);
  assert.match(
    result.stderr,
    new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2:9: .*expected`),
  );
});

test('-V prints the version, --help the usage, both exit 0', () => {
  const version = unhitch(['-V'], ROOT);
  assert.equal(version.status, 0);
  assert.match(version.stdout, /unhitch \d+\.\d+\.\d+/);
  const help = unhitch(['--help'], ROOT);
  assert.equal(help.status, 0);
  assert.match(help.stdout, /--frontend/);
  assert.match(help.stdout, /--backend-connect-timeout/);
});

test('--test with a user that does not exist exits 1, root or not, as Hitch ("Invalid user")', (t) => {
  const cwd = mkdtempSync(join(tmpdir(), 'unhitch-cli-'));
  t.after(() => rmSync(cwd, { recursive: true, force: true }));
  chmodSync(cwd, 0o755);
  makeSelfSigned({ dir: join(cwd, 'tmp/tls'), stem: 'cert', keyFileName: 'key.pem' });
  const config = join(cwd, 'hitch.conf');
  writeFileSync(
    config,
    readFileSync(join(ROOT, 'hitch-compat.conf'), 'utf8')
      .replaceAll('"./tmp/tls/', `"${cwd}/tmp/tls/`)
      .replace(/^user = .*$/m, 'user = "no-such-user-4242"'),
  );
  const result = unhitch(['--test', '--config', config], cwd);
  assert.equal(result.status, 1);
  assert.match(result.stderr, /user no-such-user-4242 does not exist/);
  if (process.getuid?.() !== 0) return;
  // As root: the same check run as nobody (setpriv), beside the installed Hitch's verdict.
  const asNobody = (command: readonly string[]) =>
    spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', ...command], {
      cwd: '/',
      encoding: 'utf8',
      timeout: 20_000,
    });
  if (asNobody(['test', '-r', CLI]).status !== 0) {
    t.diagnostic(`not run as nobody: ${CLI} is not readable by nobody (or no setpriv)`);
    return;
  }
  chmodSync(join(cwd, 'tmp/tls/key.pem'), 0o644);
  const unprivileged = asNobody([process.execPath, CLI, '--test', `--config=${config}`]);
  assert.equal(unprivileged.status, 1, unprivileged.stderr);
  assert.match(unprivileged.stderr, /user no-such-user-4242 does not exist/);
  const hitch = asNobody(['hitch', '--test', `--config=${config}`]);
  if (hitch.error === undefined && hitch.status !== 127) {
    assert.equal(hitch.status, 1, hitch.stderr);
    assert.match(hitch.stderr, /Invalid user/);
  }
});

test('an unknown flag exits 1 and names it on stderr, as Hitch (nothing on stdout)', () => {
  const result = unhitch(['--frobnicate'], ROOT);
  assert.equal(result.status, 1);
  assert.match(result.stderr, /--frobnicate/);
  assert.equal(result.stdout, '');
});

test('no argument at all prints the usage on stdout and exits 1, as Hitch', () => {
  const result = unhitch([], ROOT);
  assert.equal(result.status, 1);
  assert.match(result.stdout, /^Usage: unhitch/);
});

test("Hitch 1.7's --switch=on|off forms are accepted; another value is Hitch's error", (t) => {
  const cwd = mkdtempSync(join(tmpdir(), 'unhitch-cli-'));
  t.after(() => rmSync(cwd, { recursive: true, force: true }));
  const pem = makeSelfSigned({ dir: cwd, stem: 'site' }).combinedPath;
  const flags = [
    '--daemon=off',
    '--quiet=off',
    '--syslog=off',
    '--prefer-server-ciphers=on',
    '--sni-nomatch-abort=off',
    '--write-proxy=on',
    '--enable-tcp-fastopen=off',
    '--client=off',
    '-L2',
    `-l${join(cwd, 'u.log')}`,
    '--syslog-facility=local3',
    `--dbg-listen=${join(cwd, 'listen')}`,
  ];
  const ok = unhitch(['--test', ...AS_EXISTING_USER, ...flags, pem], cwd);
  assert.equal(ok.status, 0, ok.stderr);
  const bad = unhitch(['--test', '--daemon=yes', pem], cwd);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /invalid argument 'yes' for option '--daemon'/);
  const client = unhitch(['--test', '--client', pem], cwd);
  assert.equal(client.status, 1, 'client mode is refused, not silently served as a TLS server');
  assert.match(client.stderr, /client mode/);
});
