/**
 * Native TOML configuration: same option names and validation as hitch.conf, and
 * positions for syntax (from smol-toml) and semantic errors (the key's line:column).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '../../src/config/errors.js';
import { parseHitchConfigText, parseTomlConfigText } from '../../src/config/load.js';

function expectError(text: string, code: string, line: number, column: number): ConfigError {
  try {
    parseTomlConfigText(text, 'u.toml');
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    assert.equal(err.code, code, err.message);
    assert.deepEqual(err.position, { file: 'u.toml', line, column }, err.message);
    assert.ok(err.message.startsWith(`u.toml:${line}:${column}: `), err.message);
    return err;
  }
  assert.fail(`no error for ${JSON.stringify(text)}`);
}

const HITCH = `
backend = "[127.0.0.1]:3001"
workers = 2
daemon = off
user = "hitch"
tls-protos = TLSv1.2 TLSv1.3
ciphers = "ECDHE+AESGCM"
alpn-protos = "http/1.1"
pin-workers = off
drain-timeout = 5
backend-source-addresses = "127.0.0.2, 127.0.0.3"
metrics = "127.0.0.1:9100"
frontend = {
  host = "127.0.0.1"
  port = "3000"
  sni-nomatch-abort = on
  pem-file = { cert = "site.crt" private-key = "site.key" }
}
frontend = "[*]:8443"
pem-file = {
  cert = "./tmp/tls/cert.crt"
  private-key = "./tmp/tls/key.pem"
}
pem-file = "other.pem"
`;

const TOML = `
backend = "[127.0.0.1]:3001"
workers = 2
daemon = false
user = "hitch"
tls-protos = ["TLSv1.2", "TLSv1.3"]
ciphers = "ECDHE+AESGCM"
alpn-protos = ["http/1.1"]
pin-workers = false
drain-timeout = 5
backend-source-addresses = ["127.0.0.2", "127.0.0.3"]
metrics = "127.0.0.1:9100"

[[frontend]]
host = "127.0.0.1"
port = 3000
sni-nomatch-abort = true

[[frontend.pem-file]]
cert = "site.crt"
private-key = "site.key"

[[frontend]]
host = "*"
port = "8443"

[[pem-file]]
cert = "./tmp/tls/cert.crt"
private-key = "./tmp/tls/key.pem"

[[pem-file]]
cert = "other.pem"
`;

test('an equivalent TOML config maps to the same model as hitch.conf', () => {
  const fromHitch = parseHitchConfigText(HITCH, 'x');
  const fromToml = parseTomlConfigText(TOML, 'x');
  assert.deepEqual(fromToml.config, fromHitch.config);
  assert.deepEqual(fromToml.warnings, fromHitch.warnings);
  assert.equal(fromToml.config.frontends.length, 2);
  assert.equal(fromToml.config.frontends[0]?.sniNomatchAbort, true);
});

test('TOML frontend as a string array and inline pem-file table', () => {
  const { config } = parseTomlConfigText(
    'frontend = ["[*]:443", "[::1]:8443"]\npem-file = { cert = "a.crt", private-key = "a.key" }\n',
    'u.toml',
  );
  assert.deepEqual(
    config.frontends.map((f) => f.address),
    [
      { kind: 'tcp', host: undefined, port: 443 },
      { kind: 'tcp', host: '::1', port: 8443 },
    ],
  );
  assert.deepEqual(config.pemFiles, [
    { certPath: 'a.crt', privateKeyPath: 'a.key', ocspResponsePath: undefined },
  ]);
});

test('TOML unimplemented options warn once, like hitch.conf', () => {
  const { warnings } = parseTomlConfigText(
    'pem-file = "c.pem"\nssl-engine = "x"\nsession-cache = 5\n',
    'u.toml',
  );
  assert.deepEqual(
    warnings.map((w) => w.code),
    ['UNHITCH_CONFIG_UNIMPLEMENTED', 'UNHITCH_CONFIG_UNIMPLEMENTED'],
  );
  assert.match(warnings[0]?.message ?? '', /^u\.toml:2:1: /);
});

const MALFORMED: ReadonlyArray<readonly [string, string, string, number, number]> = [
  ['TOML syntax: double =', 'workers = = 1\n', 'UNHITCH_CONFIG_SYNTAX', 1, 11],
  [
    'TOML syntax: unclosed string',
    'pem-file = "c.pem"\nuser = "abc\n',
    'UNHITCH_CONFIG_SYNTAX',
    2,
    12,
  ],
  ['TOML syntax: duplicate key', 'workers = 1\nworkers = 2\n', 'UNHITCH_CONFIG_SYNTAX', 2, 1],
  ['unknown key', 'pem-file = "c.pem"\nbogus = 1\n', 'UNHITCH_CONFIG_UNKNOWN_OPTION', 2, 1],
  [
    'unknown key in frontend',
    '[[frontend]]\nport = 1\n  bogus = 2\n',
    'UNHITCH_CONFIG_UNKNOWN_OPTION',
    3,
    3,
  ],
  [
    'bad port in second frontend',
    'pem-file = "c.pem"\n[[frontend]]\nport = 1\n[[frontend]]\nport = 70000\n',
    'UNHITCH_CONFIG_INVALID_VALUE',
    5,
    1,
  ],
  ['integer boolean', 'daemon = 1\n', 'UNHITCH_CONFIG_INVALID_VALUE', 1, 1],
  ['workers zero', '\nworkers = 0\n', 'UNHITCH_CONFIG_INVALID_VALUE', 2, 1],
  ['workers two values', 'workers = [1, 2]\n', 'UNHITCH_CONFIG_INVALID_VALUE', 1, 1],
  [
    'nested pem-file without cert',
    '[[frontend]]\nport = 1\n[[frontend.pem-file]]\nprivate-key = "k"\n',
    'UNHITCH_CONFIG_MISSING',
    3,
    1,
  ],
  ['date value', 'user = 1979-05-27\n', 'UNHITCH_CONFIG_INVALID_VALUE', 1, 1],
  [
    'frontend table without port',
    'pem-file = "c.pem"\n[frontend]\nhost = "*"\n',
    'UNHITCH_CONFIG_MISSING',
    2,
    1,
  ],
];

test(`${MALFORMED.length} malformed TOML inputs report line:column and code`, () => {
  for (const [label, text, code, line, column] of MALFORMED) {
    try {
      expectError(text, code, line, column);
    } catch (err) {
      assert.fail(`${label}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
});
