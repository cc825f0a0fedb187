/**
 * Hitch's command line: flags, override order against --config, positional PEM files,
 * --version/--help, and errors naming the flag.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { ConfigError } from '../../src/config/errors.js';
import { type CliAction, parseCommandLine } from '../../src/config/load.js';
import type { ProxyConfig } from '../../src/config/model.js';
import { OPTIONS } from '../../src/config/options/table.js';

const ROOT = resolve(import.meta.dirname, '../../..');

function withDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-args-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function configOf(action: CliAction): ProxyConfig {
  assert.ok(action.kind === 'run' || action.kind === 'test', `unexpected action ${action.kind}`);
  return action.config;
}

function expectError(argv: readonly string[], code: string, pattern: RegExp): ConfigError {
  try {
    parseCommandLine(argv);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    assert.equal(err.code, code, err.message);
    assert.match(err.message, pattern);
    return err;
  }
  assert.fail(`no error for ${argv.join(' ')}`);
}

test('Hitch flags set the model; positional arguments are PEM files', () => {
  const action = parseCommandLine([
    '-f',
    '[127.0.0.1]:8443',
    '--frontend=[*]:9443+site.pem',
    '-b',
    '[127.0.0.1]:8000',
    '-n',
    '4',
    '-B',
    '50',
    '-k',
    '10',
    '-c',
    'ECDHE+AESGCM',
    '-O',
    '-q',
    '-s',
    '-u',
    'nobody',
    '-g',
    'nogroup',
    '-r',
    '/var/empty',
    '-p',
    '/run/u.pid',
    '--write-proxy-v2',
    '--sni-nomatch-abort',
    '--alpn-protos=h2,http/1.1',
    '--tls-protos=TLSv1.3',
    '--ciphersuites=TLS_AES_128_GCM_SHA256',
    '--backend-connect-timeout=3',
    '--ssl-handshake-timeout=4',
    '--recv-bufsize=1024',
    '--send-bufsize=2048',
    '--log-level=2',
    '--log-filename=/tmp/x.log',
    '--tcp-fastopen',
    '--ecdh-curve=X25519',
    '--daemon',
    'first.pem',
    'second.pem',
  ]);
  assert.equal(action.kind, 'run');
  const config = configOf(action);
  assert.deepEqual(
    config.frontends.map((f) => f.address),
    [
      { kind: 'tcp', host: '127.0.0.1', port: 8443 },
      { kind: 'tcp', host: undefined, port: 9443 },
    ],
  );
  assert.deepEqual(
    config.frontends[1]?.pemFiles.map((p) => p.certPath),
    ['site.pem'],
  );
  assert.deepEqual(
    config.pemFiles.map((p) => p.certPath),
    ['first.pem', 'second.pem'],
  );
  assert.deepEqual(config.backend, { kind: 'tcp', host: '127.0.0.1', port: 8000 });
  assert.equal(config.workers, 4);
  assert.equal(config.backlog, 50);
  assert.equal(config.keepaliveSec, 10);
  assert.equal(config.tls.ciphers, 'ECDHE+AESGCM');
  assert.equal(config.tls.preferServerCiphers, true);
  assert.equal(config.tls.sniNomatchAbort, true);
  assert.deepEqual(config.tls.tlsProtos, ['TLSv1.3']);
  assert.equal(config.tls.ciphersuites, 'TLS_AES_128_GCM_SHA256');
  assert.equal(config.quiet, true);
  assert.equal(config.syslog, true);
  assert.equal(config.user, 'nobody');
  assert.equal(config.group, 'nogroup');
  assert.equal(config.chroot, '/var/empty');
  assert.equal(config.pidfile, '/run/u.pid');
  assert.equal(config.proxyProtocol, 'v2');
  assert.deepEqual(config.alpnProtos, ['h2', 'http/1.1']);
  assert.equal(config.backendConnectTimeoutMs, 3000);
  assert.equal(config.sslHandshakeTimeoutMs, 4000);
  assert.equal(config.recvBufferBytes, 1024);
  assert.equal(config.sendBufferBytes, 2048);
  assert.equal(config.logLevel, 'debug');
  assert.equal(config.logFilename, '/tmp/x.log');
  assert.equal(config.tcpFastOpen, true);
  assert.equal(config.ecdhCurve, 'X25519');
  assert.equal(config.daemon, true);
  assert.equal(config.source, '<command line>');
});

test('unhitch extension flags', () => {
  const config = configOf(
    parseCommandLine([
      '--pin-workers=off',
      '--drain-timeout=2.5',
      '--ticket-key-file=t.key',
      '--ticket-rotation=600',
      '--forwarded-for=on',
      '--backend-source-addresses=127.0.0.2,127.0.0.3',
      '--metrics=127.0.0.1:9100',
      'c.pem',
    ]),
  );
  assert.equal(config.pinWorkers, false);
  assert.equal(config.drainTimeoutMs, 2500);
  assert.equal(config.ticketKeyFile, 't.key');
  assert.equal(config.ticketRotationSec, 600);
  assert.equal(config.forwardedFor, true);
  assert.deepEqual(config.backendSourceAddresses, ['127.0.0.2', '127.0.0.3']);
  assert.deepEqual(config.metrics, { kind: 'tcp', host: '127.0.0.1', port: 9100 });
  expectError(['--pin-workers=1', 'c.pem'], 'UNHITCH_CONFIG_INVALID_VALUE', /invalid boolean/);
});

test('every command-line flag in the table accepts its sample value', () => {
  let flags = 0;
  for (const spec of OPTIONS) {
    if (!spec.cli) continue;
    const value = spec.sample.replace(/^"(.*)"$/, '$1');
    // Switches take their sample as Hitch 1.7's `--switch=on|off`.
    const flag = [`--${spec.cli.long}=${value}`];
    // An acme block without a domain is refused: every --acme-* flag comes with one.
    const argv = spec.scopes.includes('acme') ? [...flag, '--acme-domain=a.example'] : flag;
    const action = parseCommandLine([...argv, 'c.pem']);
    assert.equal(action.kind, 'run', spec.name);
    if (!spec.implemented) {
      assert.equal(
        action.kind === 'run' &&
          action.warnings.filter((w) => w.code === 'UNHITCH_CONFIG_UNIMPLEMENTED').length,
        1,
        spec.name,
      );
    }
    if (spec.cli.short) {
      const shortArgv = spec.cli.takesValue
        ? [`-${spec.cli.short}`, value]
        : [`-${spec.cli.short}`];
      assert.equal(parseCommandLine([...shortArgv, 'c.pem']).kind, 'run', `-${spec.cli.short}`);
    }
    flags++;
  }
  assert.ok(flags >= 50, `${flags} flags`);
});

test('Hitch override order: --config applies first, every other flag overrides it wherever it appears', (t) => {
  const dir = withDir(t);
  const file = join(dir, 'h.conf');
  writeFileSync(
    file,
    'pem-file = "c.pem"\nworkers = 1\nbackend = "[127.0.0.1]:1000"\nuser = "fromfile"\n',
  );
  const after = configOf(parseCommandLine(['--config', file, '-n', '3']));
  assert.equal(after.workers, 3);
  const before = configOf(parseCommandLine(['-n', '3', `--config=${file}`]));
  assert.equal(before.workers, 3);
  assert.equal(before.user, 'fromfile');
  assert.deepEqual(before.backend, { kind: 'tcp', host: '127.0.0.1', port: 1000 });
  // Flags among themselves: the later one wins.
  assert.equal(configOf(parseCommandLine(['-n', '3', '--config', file, '--workers=5'])).workers, 5);
  // Two config files: the later file wins over the earlier one.
  const second = join(dir, 'second.conf');
  writeFileSync(second, 'workers = 7\n');
  const action = parseCommandLine([`--config=${file}`, `--config=${second}`]);
  assert.equal(configOf(action).workers, 7);
  assert.equal(action.kind === 'run' && action.configPath, second);
  assert.equal(configOf(action).source, second);
});

test('frontends and PEM files from the command line are added to the file ones', (t) => {
  const dir = withDir(t);
  const file = join(dir, 'h.conf');
  writeFileSync(file, 'frontend = "[*]:1"\npem-file = "file.pem"\n');
  const config = configOf(parseCommandLine(['extra.pem', '--config', file, '-f', '[*]:2']));
  assert.deepEqual(
    config.frontends.map((f) => f.address.port),
    [1, 2],
  );
  assert.deepEqual(
    config.pemFiles.map((p) => p.certPath),
    ['file.pem', 'extra.pem'],
  );
});

test('--tls/--ssl cannot override a config file tls-protos; --tls-protos can', (t) => {
  const dir = withDir(t);
  const file = join(dir, 'h.conf');
  writeFileSync(file, 'pem-file = "c.pem"\ntls-protos = TLSv1.2\n');
  expectError(['--config', file, '--tls'], 'UNHITCH_CONFIG_CONFLICT', /illegal to specify 'tls'/);
  assert.deepEqual(
    configOf(parseCommandLine(['--config', file, '--tls-protos=TLSv1.3'])).tls.tlsProtos,
    ['TLSv1.3'],
  );
  expectError(['--tls', '--ssl', 'c.pem'], 'UNHITCH_CONFIG_CONFLICT', /illegal to specify 'ssl'/);
});

test('a .toml config file is read with the TOML parser', (t) => {
  const dir = withDir(t);
  const file = join(dir, 'u.TOML');
  writeFileSync(file, 'workers = 6\n[[pem-file]]\ncert = "c.pem"\n');
  const config = configOf(parseCommandLine(['--config', file]));
  assert.equal(config.workers, 6);
  assert.deepEqual(
    config.pemFiles.map((p) => p.certPath),
    ['c.pem'],
  );
});

test('hitch-compat.conf through the command line, with -t', () => {
  const action = parseCommandLine(['-t', '--config', join(ROOT, 'hitch-compat.conf')]);
  assert.equal(action.kind, 'test');
  assert.equal(configOf(action).frontends[0]?.address.port, 3000);
  assert.equal(action.kind === 'test' && action.configPath, join(ROOT, 'hitch-compat.conf'));
});

test('-V and --version print the package version; -h, --help and no arguments print usage', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  for (const flag of ['-V', '--version']) {
    assert.deepEqual(parseCommandLine([flag]), {
      kind: 'version',
      text: `unhitch ${pkg.version} (hitch-compatible 1.7)`,
    });
  }
  for (const argv of [['-h'], ['--help'], []]) {
    const action = parseCommandLine(argv);
    assert.equal(action.kind, 'help');
    const text = action.kind === 'help' ? action.text : '';
    assert.match(text, /-f, --frontend=/);
    assert.match(text, /--backend-connect-timeout=/);
    assert.match(text, /-B, --backlog=/);
    assert.match(text, /--pin-workers=/);
  }
});

test('command-line errors', (t) => {
  const dir = withDir(t);
  let err = expectError(['--frobnicate'], 'UNHITCH_CONFIG_UNKNOWN_OPTION', /--frobnicate/);
  assert.equal(err.position, undefined);
  expectError(['-Z'], 'UNHITCH_CONFIG_UNKNOWN_OPTION', /-Z/);
  expectError(['--workers'], 'UNHITCH_CONFIG_INVALID_VALUE', /--workers/);
  expectError(['--daemon=yes'], 'UNHITCH_CONFIG_INVALID_VALUE', /--daemon/);
  err = expectError(
    ['-n', '0', 'c.pem'],
    'UNHITCH_CONFIG_INVALID_VALUE',
    /^argument '-n 0': 0 is out of range \(expected an integer 1\.\.1024 /,
  );
  expectError(['--frontend=*:443', 'c.pem'], 'UNHITCH_CONFIG_INVALID_VALUE', /invalid address/);
  expectError(
    ['--write-ip', '--proxy-proxy', 'c.pem'],
    'UNHITCH_CONFIG_CONFLICT',
    /^argument '--proxy-proxy': .*mutually exclusive/,
  );
  expectError(
    ['--frontend=*:443', 'c.pem'],
    'UNHITCH_CONFIG_INVALID_VALUE',
    /^argument '--frontend \*:443': invalid address/,
  );
  expectError(['-f', '[*]:443'], 'UNHITCH_CONFIG_MISSING', /no certificate/);
  expectError(
    ['--config', join(dir, 'missing.conf')],
    'UNHITCH_CONFIG_FILE',
    /missing\.conf.*ENOENT/,
  );
  const bad = join(dir, 'bad.conf');
  writeFileSync(bad, 'backend = "[127.0.0.1]:3001"\nworkers 4\n');
  expectError(
    ['--config', bad],
    'UNHITCH_CONFIG_SYNTAX',
    new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2:9: .*expected`),
  );
});

test('the demo command line parses', () => {
  const config = configOf(
    parseCommandLine([
      '--frontend=[127.0.0.1]:8443',
      '--backend=[127.0.0.1]:8000',
      '--ssl-handshake-timeout=10',
      '--backend-connect-timeout=5',
      'combined.pem',
    ]),
  );
  assert.equal(config.sslHandshakeTimeoutMs, 10_000);
  assert.equal(config.backendConnectTimeoutMs, 5_000);
  assert.deepEqual(
    config.pemFiles.map((p) => p.certPath),
    ['combined.pem'],
  );
});

/**
 * Hitch 1.7.2's getopt table (its long options, and the short ones of its optstring
 * "c:e:Ob:f:n:B:l:L:C:U:p:P:M:k:r:u:g:qstVho:R:"), read from the installed binary. Every
 * one must be known here: a script written for Hitch never meets "unknown option".
 */
const HITCH_LONG_FLAGS: ReadonlyArray<readonly [string, string | undefined]> = [
  ['tls-protos', 'TLSv1.2 TLSv1.3'],
  ['ciphers', 'EECDH+AESGCM'],
  ['ssl-engine', 'rdrand'],
  ['prefer-server-ciphers', undefined],
  ['client', 'off'],
  ['backend', '[127.0.0.1]:8000'],
  ['frontend', '[127.0.0.1]:8443'],
  ['recv-bufsize', '65536'],
  ['send-bufsize', '65536'],
  ['workers', '2'],
  ['backlog', '100'],
  ['keepalive', '3600'],
  ['enable-tcp-fastopen', undefined],
  ['chroot', '/'],
  ['user', 'nobody'],
  ['group', 'nogroup'],
  ['quiet', undefined],
  ['log-level', '1'],
  ['log-filename', '/tmp/u.log'],
  ['syslog', undefined],
  ['syslog-facility', 'daemon'],
  ['daemon', 'off'],
  ['write-ip', undefined],
  ['write-proxy-v1', undefined],
  ['write-proxy-v2', undefined],
  ['write-proxy', undefined],
  ['proxy-proxy', undefined],
  ['sni-nomatch-abort', undefined],
  ['alpn-protos', 'http/1.1'],
  ['ocsp-dir', '/var/lib/hitch'],
  ['pidfile', '/run/u.pid'],
  ['dbg-listen', '/run/u.listen'],
  ['tls', undefined],
  ['ssl', undefined],
  ['session-cache', '0'],
  ['shared-cache-listen', '[*]:8888'],
  ['shared-cache-peer', '[127.0.0.2]:8888'],
  ['shared-cache-if', 'lo,3'],
];
const HITCH_SHORT_FLAGS: ReadonlyArray<readonly [string, string | undefined]> = [
  ['c', 'EECDH+AESGCM'],
  ['e', 'rdrand'],
  ['O', undefined],
  ['b', '[127.0.0.1]:8000'],
  ['f', '[127.0.0.1]:8443'],
  ['n', '2'],
  ['B', '100'],
  ['l', '/tmp/u.log'],
  ['L', '2'],
  ['C', '0'],
  ['U', '[*]:8888'],
  ['p', '/run/u.pid'],
  ['P', '[127.0.0.2]:8888'],
  ['M', 'lo,3'],
  ['k', '3600'],
  ['r', '/'],
  ['u', 'nobody'],
  ['g', 'nogroup'],
  ['q', undefined],
  ['s', undefined],
  ['o', '/var/lib/hitch'],
  ['R', '30'],
];

test("every flag of Hitch 1.7's getopt table is accepted, long and short", () => {
  for (const [name, value] of HITCH_LONG_FLAGS) {
    const argv = value === undefined ? [`--${name}`] : [`--${name}=${value}`];
    const action = parseCommandLine([...argv, 'c.pem']);
    assert.equal(action.kind, 'run', name);
  }
  for (const [letter, value] of HITCH_SHORT_FLAGS) {
    const argv = value === undefined ? [`-${letter}`] : [`-${letter}`, value];
    const action = parseCommandLine([...argv, 'c.pem']);
    assert.equal(action.kind, 'run', `-${letter}`);
  }
  for (const argv of [
    ['-t', 'c.pem'],
    ['--test', 'c.pem'],
  ]) {
    assert.equal(parseCommandLine(argv).kind, 'test');
  }
  assert.equal(parseCommandLine(['-V']).kind, 'version');
  assert.equal(parseCommandLine(['-h']).kind, 'help');
});

test("syslog-facility takes Hitch's names (auth means authpriv, as there) and refuses others", () => {
  assert.equal(
    configOf(parseCommandLine(['--syslog-facility=local3', 'c.pem'])).syslogFacility,
    'local3',
  );
  assert.equal(
    configOf(parseCommandLine(['--syslog-facility=auth', 'c.pem'])).syslogFacility,
    'authpriv',
  );
  assert.equal(configOf(parseCommandLine(['c.pem'])).syslogFacility, 'daemon');
  // Hitch 1.7 has no `user` facility: "Invalid facility 'user'."
  expectError(
    ['--syslog-facility=user', 'c.pem'],
    'UNHITCH_CONFIG_INVALID_VALUE',
    /syslog facility/,
  );
});

test('workers: 1..1024 (Hitch takes any positive count; 100000 would fork until memory runs out)', (t) => {
  const dir = withDir(t);
  assert.equal(configOf(parseCommandLine(['--workers=1024', 'c.pem'])).workers, 1024);
  expectError(
    ['--workers=100000', 'c.pem'],
    'UNHITCH_CONFIG_INVALID_VALUE',
    /^argument '--workers 100000': 100000 is out of range \(expected an integer 1\.\.1024 \(each worker is a process of some 50 MB\)\)$/,
  );
  const file = join(dir, 'many.conf');
  writeFileSync(file, 'pem-file = "c.pem"\nworkers = 100000\n');
  const err = expectError(
    ['--config', file],
    'UNHITCH_CONFIG_INVALID_VALUE',
    /many\.conf:2:\d+: .*100000 is out of range \(expected an integer 1\.\.1024/,
  );
  assert.equal(err.position?.line, 2);
});
