/**
 * Every duration is range-checked when it is parsed, the same way in hitch.conf, TOML
 * and on the command line: node's timers fire after 1 ms when asked for more than
 * 2^31−1 ms, so an unchecked `drain-timeout=3000000` turned SIGTERM into SIGKILL.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { test } from 'node:test';
import { ConfigError } from '../../src/config/errors.js';
import {
  parseCommandLine,
  parseHitchConfigText,
  parseTomlConfigText,
} from '../../src/config/load.js';
import type { ProxyConfig } from '../../src/config/model.js';
import { OPTIONS } from '../../src/config/options/table.js';
import { MAX_DURATION_SECONDS } from '../../src/config/options/values.js';

const MAX_TIMER_MS = 2 ** 31 - 1;
const CLI = resolve(import.meta.dirname, '../../src/cli.js');

interface DurationCase {
  readonly option: string;
  /** What the model holds, in the unit a timer gets. */
  readonly ms: (config: ProxyConfig) => number;
  readonly min: string;
  readonly max: string;
  /** Values refused besides max + 1. */
  readonly refused: readonly string[];
}

const CASES: readonly DurationCase[] = [
  ...(
    [
      ['ocsp-connect-tmo', (c: ProxyConfig) => c.ocspConnectTimeoutMs],
      ['ocsp-resp-tmo', (c: ProxyConfig) => c.ocspResponseTimeoutMs],
      ['ocsp-refresh-interval', (c: ProxyConfig) => c.ocspRefreshIntervalMs],
    ] as const
  ).map(([option, ms]) => ({
    option,
    ms,
    min: '0.001',
    max: String(MAX_DURATION_SECONDS),
    refused: ['0', '0.0001'],
  })),
  {
    option: 'backend-connect-timeout',
    ms: (c) => c.backendConnectTimeoutMs,
    min: '0.001',
    max: String(MAX_DURATION_SECONDS),
    refused: ['0', '0.0001'],
  },
  {
    option: 'ssl-handshake-timeout',
    ms: (c) => c.sslHandshakeTimeoutMs,
    min: '0.001',
    max: String(MAX_DURATION_SECONDS),
    refused: ['0', '0.0005'],
  },
  {
    option: 'drain-timeout',
    ms: (c) => c.drainTimeoutMs,
    min: '0',
    max: String(MAX_DURATION_SECONDS),
    refused: ['3000000', '0.0001'],
  },
  {
    option: 'reload-drain-timeout',
    ms: (c) => c.reloadDrainTimeoutMs,
    min: '0',
    max: String(MAX_DURATION_SECONDS),
    refused: ['2000001', '0.0001'],
  },
  {
    option: 'request-head-timeout',
    ms: (c) => c.requestHeadTimeoutMs,
    min: '0.001',
    max: String(MAX_DURATION_SECONDS),
    refused: ['0', '0.0001', '4294967296'],
  },
  {
    option: 'idle-timeout',
    ms: (c) => c.idleTimeoutMs,
    min: '0',
    max: String(MAX_DURATION_SECONDS),
    refused: ['0.5', '3000000', '4294967296'],
  },
  {
    option: 'ticket-rotation',
    ms: (c) => c.ticketRotationSec * 1000,
    min: '0',
    max: String(MAX_DURATION_SECONDS),
    refused: ['0.5'],
  },
  {
    option: 'keepalive',
    ms: (c) => c.keepaliveSec * 1000,
    min: '0',
    max: '32767',
    refused: ['1.5', '4294967296'],
  },
];

function tooLong(max: string): string {
  return String(Number(max) + 1);
}

function hitchError(option: string, value: string): ConfigError {
  // Two lines before it, and indented, so the position is not trivially 1:1.
  const text = `backend = "[127.0.0.1]:8000"\npem-file = "c.pem"\n  ${option} = ${value}\n`;
  try {
    parseHitchConfigText(text, 't.conf');
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error;
  }
  assert.fail(`${option} = ${value} was accepted`);
}

function tomlError(option: string, value: string): ConfigError {
  const text = `backend = "[127.0.0.1]:8000"\npem-file = "c.pem"\n${option} = ${value}\n`;
  try {
    parseTomlConfigText(text, 't.toml');
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error;
  }
  assert.fail(`TOML ${option} = ${value} was accepted`);
}

function flagError(option: string, value: string): ConfigError {
  try {
    parseCommandLine([`--${option}=${value}`, 'c.pem']);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error;
  }
  assert.fail(`--${option}=${value} was accepted`);
}

for (const c of CASES) {
  test(`${c.option}: out of range is a ConfigError with file:line:column in hitch.conf and TOML, and names the flag`, () => {
    for (const value of [tooLong(c.max), ...c.refused]) {
      const hitch = hitchError(c.option, value);
      assert.equal(hitch.code, 'UNHITCH_CONFIG_INVALID_VALUE', hitch.message);
      assert.deepEqual(hitch.position, {
        file: 't.conf',
        line: 3,
        column: 5 + c.option.length + 1,
      });
      assert.match(hitch.message, /^t\.conf:3:\d+: .*(out of range|invalid).*\(expected .*\)$/);

      // TOML numbers are numbers there; a string works too: both are checked.
      const toml = tomlError(c.option, value);
      assert.equal(toml.code, 'UNHITCH_CONFIG_INVALID_VALUE', toml.message);
      assert.equal(toml.position?.line, 3, toml.message);
      assert.match(toml.message, /^t\.toml:3:\d+: /);

      const flag = flagError(c.option, value);
      assert.equal(flag.code, 'UNHITCH_CONFIG_INVALID_VALUE', flag.message);
      assert.match(flag.message, new RegExp(`^argument '--${c.option}[ =]`));
    }
  });

  test(`${c.option}: the bounds are accepted and every accepted value fits a node timer`, () => {
    for (const value of [c.min, c.max]) {
      const { config } = parseHitchConfigText(
        `backend = "[127.0.0.1]:8000"\npem-file = "c.pem"\n${c.option} = ${value}\n`,
        't.conf',
      );
      const ms = c.ms(config);
      assert.equal(ms, Number(value) * 1000);
      // Timers that add slack to it (the primary's drain kill) stay within range too.
      assert.ok(ms + 60_000 <= MAX_TIMER_MS, `${c.option} = ${value}: ${ms} ms`);
    }
  });
}

test('every option that takes seconds is range-checked here', () => {
  // The acme block's retry is checked in config-acme.test.ts (it lives inside a block).
  const seconds = OPTIONS.filter(
    (spec) => spec.valueType === 'seconds' && spec.implemented && spec.scopes.includes('global'),
  ).map((spec) => spec.name);
  const covered = new Set(CASES.map((c) => c.option));
  assert.deepEqual(
    seconds.filter((name) => !covered.has(name)),
    [],
  );
});

test('unhitch --test refuses drain-timeout=3000000 (it used to pass, then SIGTERM killed every worker)', () => {
  const result = spawnSync(
    process.execPath,
    [CLI, '--test', '--drain-timeout=3000000', '--backend=[127.0.0.1]:8000', 'c.pem'],
    { encoding: 'utf8' },
  );
  assert.equal(result.status, 1, result.stderr);
  assert.match(
    result.stderr,
    /drain-timeout.*duration 3000000 is out of range \(expected seconds from 0\.001 to 2000000, or 0 \(close at once\)\) \[UNHITCH_CONFIG_INVALID_VALUE\]/,
  );
});

test('ticket-rotation = 0 means never (a key file shared by several hosts must not be rotated by each)', () => {
  const { config } = parseHitchConfigText(
    'backend = "[127.0.0.1]:8000"\npem-file = "c.pem"\nticket-rotation = 0\n',
    't.conf',
  );
  assert.equal(config.ticketRotationSec, 0);
});

test('request-head-timeout defaults to 30 s (Hitch-like) and idle-timeout and max-handshakes to off', () => {
  const { config } = parseHitchConfigText(
    'backend = "[127.0.0.1]:8000"\npem-file = "c.pem"\n',
    't.conf',
  );
  assert.equal(config.requestHeadTimeoutMs, 30_000);
  assert.equal(config.idleTimeoutMs, 0);
  assert.equal(config.maxHandshakes, 0);
  const set = parseHitchConfigText(
    'backend = "[127.0.0.1]:8000"\npem-file = "c.pem"\nidle-timeout = 600\nmax-handshakes = 256\n',
    't.conf',
  ).config;
  assert.equal(set.idleTimeoutMs, 600_000);
  assert.equal(set.maxHandshakes, 256);
  const action = parseCommandLine(['--max-handshakes=64', '--request-head-timeout=5', 'c.pem']);
  assert.equal(action.kind === 'run' ? action.config.maxHandshakes : action.kind, 64);
  assert.equal(
    parseTomlConfigText('pem-file = "c.pem"\nmax-handshakes = 8\n', 't.toml').config.maxHandshakes,
    8,
  );
  assert.throws(
    () => parseCommandLine(['--max-handshakes=-1', 'c.pem']),
    (error: unknown) =>
      error instanceof ConfigError && error.code === 'UNHITCH_CONFIG_INVALID_VALUE',
  );
});

test('unhitch --test refuses idle-timeout=4294967296 (a timer of over 2^31-1 ms would fire at once)', () => {
  const result = spawnSync(
    process.execPath,
    [CLI, '--test', '--idle-timeout=4294967296', '--backend=[127.0.0.1]:8000', 'c.pem'],
    { encoding: 'utf8' },
  );
  assert.equal(result.status, 1, result.stderr);
  assert.match(
    result.stderr,
    /idle-timeout.*duration 4294967296 is out of range \(expected seconds from 1 to 2000000, or 0 \(never\)\) \[UNHITCH_CONFIG_INVALID_VALUE\]/,
  );
});
