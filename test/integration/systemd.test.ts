import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DEFAULT_CONFIG } from '../../src/config/model.js';

// dist/test/integration → repository root
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const unitPath = join(repoRoot, 'systemd', 'unhitch.service');
const compiledCli = join(repoRoot, 'dist', 'src', 'cli.js');
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

test('unit file passes systemd-analyze verify', {
  skip: !hasSystemdAnalyze && 'no systemd-analyze',
}, () => {
  const unit = readUnit();
  const [execStart, ...extra] = directiveValues(unit, 'ExecStart');
  assert.equal(extra.length, 0);
  assert.equal(execStart, '/usr/local/bin/unhitch --config=/etc/unhitch/hitch.conf');
  // verify insists ExecStart's binary exists; point it at a real one, keep the arguments.
  const testable = unit.replace(
    /^ExecStart=\S+ /m,
    `ExecStart=${process.execPath} ${compiledCli} `,
  );
  const changed = testable.split('\n').filter((line, index) => line !== unit.split('\n')[index]);
  assert.equal(changed.length, 1, 'only ExecStart differs');

  const dir = mkdtempSync(join(tmpdir(), 'unhitch-unit-'));
  try {
    const copy = join(dir, 'unhitch.service');
    writeFileSync(copy, testable);
    const result = spawnSync('systemd-analyze', ['verify', copy], {
      encoding: 'utf8',
      timeout: 30_000,
      env: { ...process.env, SYSTEMD_LOG_COLOR: '0' },
    });
    const aboutUnit = result.stderr.split('\n').filter((line) => line.includes('unhitch'));
    assert.deepEqual(aboutUnit, [], result.stderr);
    assert.equal(result.status, 0, result.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('unit file keeps the operational settings the proxy relies on', () => {
  const unit = readUnit();
  const single = (key: string): string | undefined => {
    const values = directiveValues(unit, key);
    assert.ok(values.length <= 1, `${key} set more than once`);
    return values[0];
  };
  assert.equal(single('Type'), 'exec');
  assert.equal(single('ExecReload'), '/bin/kill -HUP $MAINPID');
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
