import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DEFAULT_CONFIG } from '../../src/config/model.js';

// dist/test/integration → repository root
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const unitPath = join(repoRoot, 'systemd', 'unhitch.service');
const hasSystemdAnalyze = !spawnSync('systemd-analyze', ['--version']).error;

function readUnit(): string {
  return readFileSync(unitPath, 'utf8');
}

/** Values of `Key=` in the unit, in order (comments ignored). */
function directiveValues(unit: string, key: string): string[] {
  return unit
    .split('\n')
    .filter((line) => line.startsWith(`${key}=`))
    .map((line) => line.slice(key.length + 1));
}

function parseSeconds(value: string): number {
  const match = /^(\d+)(s|min)?$/.exec(value);
  assert.ok(match, `unsupported time span ${value}`);
  return Number(match[1]) * (match[2] === 'min' ? 60 : 1);
}

/** The unit's commands, as the Debian package installs them (packaging/build-deb.sh). */
const LAUNCHER = '/usr/sbin/unhitch';
const PIDFILE = '/run/unhitch/unhitch.pid';

test('unit file passes systemd-analyze verify as it is, but for the launcher the package installs', {
  skip: !hasSystemdAnalyze && 'no systemd-analyze',
}, () => {
  // Unchanged: the installed copy (with /usr/sbin/unhitch and the man pages present) is
  // verified whole by test/integration/package-deb.test.ts. Here, without the package,
  // the only complaint allowed is the launcher it would install; the man pages are too.
  const result = spawnSync('systemd-analyze', ['verify', '--man=no', unitPath], {
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, SYSTEMD_LOG_COLOR: '0' },
  });
  const launcherInstalled = spawnSync('test', ['-x', LAUNCHER]).status === 0;
  const complaints = result.stderr
    .split('\n')
    .filter((line) => line.includes('unhitch'))
    .filter((line) => launcherInstalled || !line.includes(`Command ${LAUNCHER} is not executable`));
  assert.deepEqual(complaints, [], result.stderr);
  if (launcherInstalled) assert.equal(result.status, 0, result.stderr);
});

test('unit file starts the daemon, reads its pidfile and reloads through --reload', () => {
  const unit = readUnit();
  assert.deepEqual(directiveValues(unit, 'Type'), ['forking']);
  assert.deepEqual(directiveValues(unit, 'PIDFile'), [PIDFILE]);
  assert.deepEqual(directiveValues(unit, 'ExecStart'), [
    `${LAUNCHER} --daemon --pidfile=${PIDFILE} --config=/etc/unhitch/unhitch.conf`,
  ]);
  assert.deepEqual(directiveValues(unit, 'ExecReload'), [
    `${LAUNCHER} --reload --pidfile=${PIDFILE}`,
  ]);
  // The pidfile's directory is the one systemd makes for the unit.
  assert.deepEqual(directiveValues(unit, 'RuntimeDirectory'), ['unhitch']);
});

test('unit file keeps the operational settings the proxy relies on', () => {
  const unit = readUnit();
  const single = (key: string): string | undefined => {
    const values = directiveValues(unit, key);
    assert.ok(values.length <= 1, `${key} set more than once`);
    return values[0];
  };
  assert.equal(single('KillSignal'), 'SIGTERM');
  assert.equal(single('Restart'), 'on-failure');
  assert.equal(single('LimitNOFILE'), '1048576');
  assert.ok(
    parseSeconds(single('TimeoutStopSec') ?? '0') * 1000 > DEFAULT_CONFIG.drainTimeoutMs,
    'TimeoutStopSec must exceed the default drain grace',
  );
  const capabilities = (single('CapabilityBoundingSet') ?? '').split(/\s+/);
  for (const capability of ['CAP_NET_BIND_SERVICE', 'CAP_SETUID', 'CAP_SETGID']) {
    assert.ok(capabilities.includes(capability), capability);
  }
  assert.equal(single('RestrictAddressFamilies'), 'AF_INET AF_INET6 AF_UNIX');
  for (const key of [
    'NoNewPrivileges',
    'ProtectHome',
    'PrivateTmp',
    'PrivateDevices',
    'ProtectKernelTunables',
    'ProtectKernelModules',
    'ProtectControlGroups',
    'LockPersonality',
    'RestrictRealtime',
  ]) {
    assert.equal(single(key), 'yes', key);
  }
  assert.equal(single('ProtectSystem'), 'strict');
  assert.equal(single('SystemCallArchitectures'), 'native');
  // V8's JIT needs W+X pages.
  assert.equal(single('MemoryDenyWriteExecute'), undefined);
});
