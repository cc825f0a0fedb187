/**
 * The acme block: hitch.conf, TOML and --acme-* flags produce the same AcmeConfig; off
 * by default; errors point at file:line:column.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { ConfigError } from '../../src/config/errors.js';
import {
  parseCommandLine,
  parseHitchConfigText,
  parseTomlConfigText,
} from '../../src/config/load.js';
import { DEFAULT_ACME } from '../../src/config/model.js';

const HITCH = `frontend = "[*]:443"
acme = {
  directory = "https://ca.example/dir"
  contact = "mailto:ops@example.com"
  domain = "Tracker.Example.com"
  domain = "www.example.com"
  state-dir = "/var/lib/unhitch/acme"
  challenge = "http-01"
  http-listen = "[*]:80"
  retry = 30
}
`;

const TOML = `frontend = "[*]:443"
[acme]
directory = "https://ca.example/dir"
contact = ["mailto:ops@example.com"]
domain = ["tracker.example.com", "www.example.com"]
state-dir = "/var/lib/unhitch/acme"
challenge = "http-01"
http-listen = "[*]:80"
retry = 30
`;

const EXPECTED = {
  directoryUrl: 'https://ca.example/dir',
  contact: ['mailto:ops@example.com'],
  domains: ['tracker.example.com', 'www.example.com'],
  stateDir: '/var/lib/unhitch/acme',
  challenge: 'http-01',
  httpListen: { kind: 'tcp', host: undefined, port: 80 },
  retrySec: 30,
};

function configOf(argv: readonly string[]) {
  const action = parseCommandLine(argv);
  assert.equal(action.kind, 'run');
  return action.kind === 'run' ? action.config : undefined;
}

function expectError(run: () => unknown, code: string, message: RegExp): ConfigError {
  try {
    run();
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    assert.equal(err.code, code, err.message);
    assert.match(err.message, message);
    return err;
  }
  assert.fail('expected a ConfigError');
}

test('acme is off by default and needs no pem-file when on (hitch.conf, TOML, flags agree)', () => {
  assert.equal(parseHitchConfigText('pem-file = "c.pem"\n', 'a.conf').config.acme, undefined);
  // No pem-file at all: the ACME certificate (or its placeholder) is the certificate.
  assert.deepEqual(parseHitchConfigText(HITCH, 'a.conf').config.acme, EXPECTED);
  assert.deepEqual(parseTomlConfigText(TOML, 'a.toml').config.acme, EXPECTED);
  const flags = configOf([
    '--frontend=[*]:443',
    '--acme-directory=https://ca.example/dir',
    '--acme-contact=mailto:ops@example.com',
    '--acme-domain=tracker.example.com',
    '--acme-domain=www.example.com',
    '--acme-state-dir=/var/lib/unhitch/acme',
    '--acme-challenge=http-01',
    '--acme-http-listen=[*]:80',
    '--acme-retry=30',
  ]);
  assert.deepEqual(flags?.acme, EXPECTED);
  const minimal = parseHitchConfigText('acme = { domain = "a.example" }\n', 'a.conf').config;
  assert.deepEqual(minimal.acme, { ...DEFAULT_ACME, domains: ['a.example'] });
  assert.ok(Object.isFrozen(minimal.acme));
});

test('a later source overrides the acme block field by field; its domains replace the list', () => {
  const text = 'acme = {\n  domain = "a.example"\n  domain = "b.example"\n  retry = 5\n}\n';
  const dir = `/tmp/unhitch-acme-args-${process.pid}`;
  const { writeFileSync, mkdirSync, rmSync } = fs;
  mkdirSync(dir, { recursive: true });
  try {
    writeFileSync(`${dir}/a.conf`, text);
    const config = configOf([`--config=${dir}/a.conf`, '--acme-domain=c.example']);
    assert.deepEqual(config?.acme?.domains, ['c.example']);
    assert.equal(config?.acme?.retrySec, 5);
    const same = configOf([`--config=${dir}/a.conf`, '--acme-retry=7']);
    assert.deepEqual(same?.acme?.domains, ['a.example', 'b.example']);
    assert.equal(same?.acme?.retrySec, 7);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('acme errors: no domain, wildcard, http-01 without a listener, wrong scope, bad values', () => {
  let err = expectError(
    () => parseHitchConfigText('pem-file = "c.pem"\nacme = {\n  retry = 5\n}\n', 'a.conf'),
    'UNHITCH_CONFIG_MISSING',
    /acme block names no domain/,
  );
  assert.deepEqual(err.position, { file: 'a.conf', line: 2, column: 1 });
  err = expectError(
    () => parseHitchConfigText('acme = {\n  domain = "*.example.com"\n}\n', 'a.conf'),
    'UNHITCH_CONFIG_INVALID_VALUE',
    /dns-01/,
  );
  assert.deepEqual(err.position, { file: 'a.conf', line: 2, column: 12 });
  expectError(
    () => parseHitchConfigText('acme = { domain = "a..example" }\n', 'a.conf'),
    'UNHITCH_CONFIG_INVALID_VALUE',
    /invalid DNS name/,
  );
  expectError(
    () => parseHitchConfigText('acme = { domain = "a.example" challenge = "http-01" }\n', 'a.conf'),
    'UNHITCH_CONFIG_MISSING',
    /needs a plain-HTTP listener/,
  );
  expectError(
    () => parseHitchConfigText('acme = { domain = "a.example" challenge = "dns-01" }\n', 'a.conf'),
    'UNHITCH_CONFIG_INVALID_VALUE',
    /invalid challenge/,
  );
  expectError(
    () => parseHitchConfigText('acme = { domain = "a.example" contact = "ops@x" }\n', 'a.conf'),
    'UNHITCH_CONFIG_INVALID_VALUE',
    /invalid URL/,
  );
  err = expectError(
    () => parseHitchConfigText('pem-file = "c.pem"\ndomain = "a.example"\n', 'a.conf'),
    'UNHITCH_CONFIG_UNKNOWN_OPTION',
    /not allowed at the top level/,
  );
  assert.deepEqual(err.position, { file: 'a.conf', line: 2, column: 1 });
  expectError(
    () => parseHitchConfigText('acme = "on"\n', 'a.conf'),
    'UNHITCH_CONFIG_INVALID_VALUE',
    /takes a block/,
  );
  expectError(
    () => parseCommandLine(['--acme-retry=5', 'c.pem']),
    'UNHITCH_CONFIG_MISSING',
    /names no domain/,
  );
});

test('acme retry: at least 1 s, at most the longest duration any option takes', () => {
  for (const bad of ['0', '0.5', '2000001', 'soon']) {
    expectError(
      () => parseHitchConfigText(`acme = { domain = "a.example" retry = ${bad} }\n`, 'a.conf'),
      'UNHITCH_CONFIG_INVALID_VALUE',
      /retry|duration/,
    );
  }
  const config = parseHitchConfigText('acme = { domain = "a.example" retry = 1 }\n', 'a.conf');
  assert.equal(config.config.acme?.retrySec, 1);
});

test('acme domain: an IP literal (v4 or v6) is refused, in the file with its position and as a flag', () => {
  for (const [text, column] of [
    ['127.0.0.1', 12],
    ['10.1', 12],
    ['::1', 12],
    ['[::1]', 12],
    ['2001:db8::7', 12],
  ] as const) {
    const err = expectError(
      () => parseHitchConfigText(`acme = {\n  domain = "${text}"\n}\n`, 'a.conf'),
      'UNHITCH_CONFIG_INVALID_VALUE',
      /is an IP address, not a DNS name/,
    );
    assert.deepEqual(err.position, { file: 'a.conf', line: 2, column });
  }
  const flag = expectError(
    () => parseCommandLine(['--acme-domain=127.0.0.1', 'c.pem']),
    'UNHITCH_CONFIG_INVALID_VALUE',
    /"127\.0\.0\.1" is an IP address/,
  );
  assert.match(flag.message, /--acme-domain/);
  // A name that merely starts with digits stays a name.
  const config = parseHitchConfigText('acme = { domain = "1.example" }\n', 'a.conf');
  assert.deepEqual(config.config.acme?.domains, ['1.example']);
});
