/**
 * The `unhitch` binary as users run it: exit statuses and what it prints.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { makeSelfSigned } from '../../src/tls/selfsigned.js';

const ROOT = resolve(import.meta.dirname, '../../..');
const CLI = join(ROOT, 'dist/src/cli.js');

function unhitch(args: readonly string[], cwd: string) {
  return spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: 'utf8', timeout: 20_000 });
}

test('--test accepts the benchmark hitch.conf unchanged', (t) => {
  // hitch-compat.conf names ./tmp/tls/{cert.crt,key.pem} relative to where it runs.
  const cwd = mkdtempSync(join(tmpdir(), 'unhitch-cli-'));
  t.after(() => rmSync(cwd, { recursive: true, force: true }));
  makeSelfSigned({ dir: join(cwd, 'tmp/tls'), stem: 'cert', keyFileName: 'key.pem' });
  const result = unhitch(['--test', '--config', join(ROOT, 'hitch-compat.conf')], cwd);
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stdout, /Configuration looks ok/);
});

test('--test with a missing certificate exits 1 naming the file', (t) => {
  const cwd = mkdtempSync(join(tmpdir(), 'unhitch-cli-'));
  t.after(() => rmSync(cwd, { recursive: true, force: true }));
  const result = unhitch(['--test', '--config', join(ROOT, 'hitch-compat.conf')], cwd);
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

test('an unknown flag exits 1 and names it', () => {
  const result = unhitch(['--frobnicate'], ROOT);
  assert.equal(result.status, 1);
  assert.match(result.stderr, /--frobnicate/);
});
