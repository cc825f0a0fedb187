/**
 * An unsupported Node.js is refused up front, with one line that names the problem, by
 * every way into unhitch (the CLI, its npm launcher, `npm start`'s demo); `npm ci` under
 * it fails at once; and `npm install -g` gives a `unhitch` that runs under the Node that
 * installed it, with its man pages. The old Node is the machine's own /usr/bin/node
 * (Debian 12: v18; this CI image: v20).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  realpathSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { runtimeRefusal } from '../../src/runtime.js';
import { npmCommand } from '../helpers/npm.js';

const ROOT = resolve(import.meta.dirname, '../../..');
const OLD_NODE = '/usr/bin/node';
/** Only the system's directories: PATH's `node` is the distribution's. */
const SYSTEM_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';

function oldNodeVersion(): string | undefined {
  const result = spawnSync(OLD_NODE, ['--version'], { encoding: 'utf8' });
  return result.status === 0 ? result.stdout.trim() : undefined;
}

const oldVersion = oldNodeVersion();
const skipOld =
  oldVersion === undefined
    ? `no ${OLD_NODE}: nothing older than 22.12 to try`
    : runtimeRefusal(oldVersion) === undefined
      ? `${OLD_NODE} is ${oldVersion}, a supported version`
      : false;
const refusal = oldVersion === undefined ? '' : `${runtimeRefusal(oldVersion)}\n`;

/** npm's own script: the npm running this test, else the one on PATH. */
function npmScript(): string {
  const [command, prefix] = npmCommand();
  if (command !== 'npm' && prefix[0] !== undefined) return prefix[0];
  return realpathSync(
    spawnSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).stdout.trim(),
  );
}

/** npm run by `node`, with that node first on an otherwise system-only PATH. */
function npmUnder(node: string, args: readonly string[], cwd: string) {
  return spawnSync(node, [npmScript(), ...args], {
    cwd,
    encoding: 'utf8',
    timeout: 120_000,
    env: { PATH: `${dirname(node)}:${SYSTEM_PATH}`, HOME: process.env.HOME ?? '/root' },
  });
}

test('each entry point refuses an old Node with one line and status 1', { skip: skipOld }, () => {
  for (const entry of ['dist/src/bin.js', 'dist/src/cli.js', 'dist/src/demo/bin.js']) {
    const result = spawnSync(OLD_NODE, [join(ROOT, entry), '--version'], { encoding: 'utf8' });
    assert.equal(result.status, 1, entry);
    assert.equal(result.stderr, refusal, entry);
    assert.equal(result.stdout, '', entry);
  }
  // The npm launcher finds no node beside it in bin/, so PATH's (the old one) runs it.
  const launcher = spawnSync(join(ROOT, 'packaging/npm/unhitch'), ['--version'], {
    encoding: 'utf8',
    env: { PATH: SYSTEM_PATH },
  });
  assert.equal(launcher.status, 1);
  assert.equal(launcher.stderr, refusal);
  assert.equal(launcher.stdout, '');
});

test('npm start under an old Node prints the refusal and exits 1', { skip: skipOld }, () => {
  const result = npmUnder(OLD_NODE, ['start'], ROOT);
  assert.equal(result.status, 1, result.stderr);
  assert.ok(result.stderr.endsWith(refusal), result.stderr);
  assert.doesNotMatch(result.stdout + result.stderr, /ERR_CRYPTO|certificate|wss:/);
});

test('npm ci under an old Node fails at once: engine-strict (.npmrc)', { skip: skipOld }, (t) => {
  // A copy of what `npm ci` reads, so a failure cannot touch this checkout's node_modules.
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-engine-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const file of ['package.json', 'package-lock.json', '.npmrc'])
    copyFileSync(join(ROOT, file), join(dir, file));
  const result = npmUnder(OLD_NODE, ['ci', '--ignore-scripts', '--offline'], dir);
  assert.equal(result.status, 1, result.stderr);
  assert.match(result.stderr, /EBADENGINE/);
  assert.match(result.stderr, /Required: \{"node":">=22\.12"\}/);
  assert.equal(existsSync(join(dir, 'node_modules')), false, 'nothing was installed');
});

test("npm install -g of the packed tarball: man pages; the node beside its bin runs it, else PATH's", (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-global-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const packed = npmUnder(
    process.execPath,
    ['pack', '--ignore-scripts', '--pack-destination', dir],
    ROOT,
  );
  assert.equal(packed.status, 0, packed.stderr);
  const tarball = readdirSync(dir).find((name) => name.endsWith('.tgz'));
  assert.ok(tarball, packed.stdout);
  const prefix = join(dir, 'prefix');
  mkdirSync(join(prefix, 'bin'), { recursive: true });
  const installed = npmUnder(
    process.execPath,
    [
      'install',
      '-g',
      '--prefix',
      prefix,
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
      join(dir, tarball),
    ],
    dir,
  );
  assert.equal(installed.status, 0, installed.stderr);
  // A prefix of its own (--prefix, an npmrc's prefix): no node beside the launcher, so
  // PATH's runs it, and an old one says so (docs/deploy.md, "Without the package").
  if (!skipOld) {
    const pathNode = spawnSync(join(prefix, 'bin/unhitch'), ['--version'], {
      encoding: 'utf8',
      env: { PATH: SYSTEM_PATH },
    });
    assert.equal(pathNode.status, 1, pathNode.stdout);
    assert.equal(pathNode.stderr, refusal);
  }
  // A Node installed into its own prefix (a tarball, nvm, .ci/provision-node), which is
  // npm's default global prefix: the bin sits next to that node. The same as the fix
  // docs/deploy.md gives for another prefix: that node linked in beside the launcher.
  symlinkSync(process.execPath, join(prefix, 'bin/node'));
  // PATH's node is the old one; the launcher takes the node beside it.
  const version = spawnSync(join(prefix, 'bin/unhitch'), ['--version'], {
    encoding: 'utf8',
    env: { PATH: SYSTEM_PATH },
  });
  assert.equal(version.status, 0, version.stderr);
  assert.match(version.stdout, /^unhitch \d+\.\d+\.\d+/);
  if (!existsSync(join(ROOT, 'docs/man/unhitch.8'))) {
    t.diagnostic('man pages not checked: docs/man not generated yet (`npm run docs:reference`)');
    return;
  }
  for (const page of ['man8/unhitch.8', 'man5/unhitch.conf.5'])
    assert.ok(existsSync(join(prefix, 'share/man', page)), `${page} installed`);
});
