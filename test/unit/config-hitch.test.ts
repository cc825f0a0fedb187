/**
 * hitch.conf front end: lexer quirks, grammar, every option in the table, and the
 * exact position and code of errors.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { ConfigError } from '../../src/config/errors.js';
import { parseHitchConfigText } from '../../src/config/load.js';
import { DEFAULT_CONFIG, DEFAULT_TLS } from '../../src/config/model.js';
import { OPTIONS } from '../../src/config/options/table.js';

const ROOT = resolve(import.meta.dirname, '../../..');
const PEM = 'pem-file = "c.pem"\n';

function parse(text: string) {
  return parseHitchConfigText(text, 'test.conf');
}

function expectError(text: string, code: string, line: number, column: number): ConfigError {
  try {
    parse(text);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.deepEqual(err.position, { file: 'test.conf', line, column }, err.message);
    assert.ok(err.message.startsWith(`test.conf:${line}:${column}: `), err.message);
    return err;
  }
  assert.fail(`no error for ${JSON.stringify(text)}`);
}

test('hitch-compat.conf parses to the expected model', () => {
  const text = readFileSync(join(ROOT, 'hitch-compat.conf'), 'utf8');
  const { config, warnings } = parseHitchConfigText(text, 'hitch-compat.conf');
  assert.deepEqual(warnings, []);
  assert.equal(config.source, 'hitch-compat.conf');
  assert.equal(config.frontends.length, 1);
  assert.deepEqual(config.frontends[0], {
    ...DEFAULT_TLS,
    address: { kind: 'tcp', host: '127.0.0.1', port: 3000 },
    pemFiles: [],
    matchGlobalCerts: false,
  });
  assert.deepEqual(config.backend, { kind: 'tcp', host: '127.0.0.1', port: 3001 });
  assert.equal(config.workers, 1);
  assert.equal(config.daemon, false);
  assert.equal(config.user, 'hitch');
  assert.equal(config.group, 'hitch');
  assert.deepEqual(config.pemFiles, [
    {
      certPath: './tmp/tls/cert.crt',
      privateKeyPath: './tmp/tls/key.pem',
      ocspResponsePath: undefined,
    },
  ]);
  assert.deepEqual(config.tls, DEFAULT_TLS);
  assert.equal(config.proxyProtocol, 'off');
  assert.equal(config.backendConnectTimeoutMs, DEFAULT_CONFIG.backendConnectTimeoutMs);
  assert.ok(Object.isFrozen(config) && Object.isFrozen(config.frontends));
});

function sampleConfig(name: string, sample: string, scope: string): string {
  if (scope === 'frontend') return `${PEM}frontend = {\n  port = "443"\n  ${name} = ${sample}\n}\n`;
  if (scope === 'pem-file') return `pem-file = {\n  cert = "a.pem"\n  ${name} = ${sample}\n}\n`;
  if (scope === 'acme') return `${PEM}acme = {\n  domain = "a.example"\n  ${name} = ${sample}\n}\n`;
  return `${PEM}${name} = ${sample}\n`;
}

test('every option in the table parses its sample value in every scope it allows', () => {
  assert.ok(OPTIONS.length >= 60, `only ${OPTIONS.length} options`);
  let checked = 0;
  for (const spec of OPTIONS) {
    for (const scope of spec.scopes) {
      const text = sampleConfig(spec.name, spec.sample, scope);
      const { warnings } = parse(text);
      const unimplemented = warnings.filter((w) => w.code === 'UNHITCH_CONFIG_UNIMPLEMENTED');
      if (spec.implemented) {
        assert.deepEqual(unimplemented, [], `${spec.name} (${scope})`);
      } else {
        assert.equal(unimplemented.length, 1, `${spec.name} (${scope})`);
        assert.match(unimplemented[0]?.message ?? '', new RegExp(`'${spec.name}'`));
      }
      checked++;
    }
  }
  assert.ok(checked > OPTIONS.length);
});

test('the table covers every Hitch 1.7/1.8 option and the unhitch extensions', () => {
  const names = new Set(OPTIONS.map((spec) => spec.name));
  const hitch = [
    'frontend',
    'backend',
    'pem-file',
    'pem-dir',
    'pem-dir-glob',
    'ssl-engine',
    'tls-protos',
    'ssl',
    'tls',
    'ciphers',
    'ciphersuites',
    'prefer-server-ciphers',
    'workers',
    'backlog',
    'keepalive',
    'chroot',
    'user',
    'group',
    'quiet',
    'syslog',
    'syslog-facility',
    'daemon',
    'write-ip',
    'write-proxy',
    'write-proxy-v1',
    'write-proxy-v2',
    'proxy-proxy',
    'proxy-tlv',
    'proxy-authority',
    'proxy-client-cert',
    'alpn-protos',
    'sni-nomatch-abort',
    'match-global-certs',
    'host',
    'port',
    'cert',
    'private-key',
    'ocsp-resp-file',
    'ocsp-dir',
    'ocsp-connect-tmo',
    'ocsp-resp-tmo',
    'ocsp-refresh-interval',
    'ocsp-verify-staple',
    'backend-connect-timeout',
    'ssl-handshake-timeout',
    'recv-bufsize',
    'send-bufsize',
    'log-filename',
    'log-level',
    'tcp-fastopen',
    'ecdh-curve',
    'session-cache',
    'shared-cache-listen',
    'shared-cache-peer',
    'shared-cache-if',
    'client-verify',
    'client-verify-ca',
    'pidfile',
    'ring-slots',
    'ring-data-len',
    'backend-refresh',
  ];
  const extensions = [
    'pin-workers',
    'drain-timeout',
    'reload-drain-timeout',
    'ticket-key-file',
    'ticket-rotation',
    'forwarded-for',
    'backend-source-addresses',
    'metrics',
  ];
  for (const name of [...hitch, ...extensions]) assert.ok(names.has(name), name);
  for (const name of extensions)
    assert.equal(OPTIONS.find((s) => s.name === name)?.extension, true, name);
});

test('implemented options set the model', () => {
  const { config } = parse(`${PEM}
    backend = "/run/tracker.sock"
    ciphers = "ECDHE+AESGCM"
    ciphersuites = "TLS_AES_256_GCM_SHA384"
    prefer-server-ciphers = on
    sni-nomatch-abort = yes
    ecdh-curve = "X25519"
    alpn-protos = "http/1.1"
    write-proxy = on
    backend-connect-timeout = 5
    ssl-handshake-timeout = 0.5
    backlog = 512
    keepalive = 0
    recv-bufsize = 4096
    send-bufsize = 0
    tcp-fastopen = on
    workers = 3
    chroot = "/var/empty"
    pidfile = "/run/u.pid"
    log-level = 2
    log-filename = "/tmp/u.log"
    syslog = on
    pin-workers = off
    drain-timeout = 7
    reload-drain-timeout = 90
    ticket-key-file = "t.key"
    ticket-rotation = 60
    forwarded-for = on
    backend-source-addresses = "127.0.0.2 127.0.0.3,::1"
    metrics = "[::1]:9100"
  `);
  assert.deepEqual(config.backend, { kind: 'unix', path: '/run/tracker.sock' });
  assert.deepEqual(config.tls, {
    ...DEFAULT_TLS,
    ciphers: 'ECDHE+AESGCM',
    ciphersuites: 'TLS_AES_256_GCM_SHA384',
    preferServerCiphers: true,
    sniNomatchAbort: true,
  });
  assert.equal(config.ecdhCurve, 'X25519');
  assert.deepEqual(config.alpnProtos, ['http/1.1']);
  assert.equal(config.proxyProtocol, 'v2');
  assert.equal(config.reloadDrainTimeoutMs, 90_000);
  assert.equal(config.backendConnectTimeoutMs, 5000);
  assert.equal(config.sslHandshakeTimeoutMs, 500);
  assert.equal(config.backlog, 512);
  assert.equal(config.keepaliveSec, 0);
  assert.equal(config.recvBufferBytes, 4096);
  assert.equal(config.sendBufferBytes, undefined);
  assert.equal(config.tcpFastOpen, true);
  assert.equal(config.workers, 3);
  assert.equal(config.chroot, '/var/empty');
  assert.equal(config.pidfile, '/run/u.pid');
  assert.equal(config.logLevel, 'debug');
  assert.equal(config.logFilename, '/tmp/u.log');
  assert.equal(config.syslog, true);
  assert.equal(config.pinWorkers, false);
  assert.equal(config.drainTimeoutMs, 7000);
  assert.equal(config.ticketKeyFile, 't.key');
  assert.equal(config.ticketRotationSec, 60);
  assert.equal(config.forwardedFor, true);
  assert.deepEqual(config.backendSourceAddresses, ['127.0.0.2', '127.0.0.3', '::1']);
  assert.deepEqual(config.metrics, { kind: 'tcp', host: '::1', port: 9100 });
});

test('comments, stray commas and semicolons, and newlines are insignificant', () => {
  const { config } = parse(
    '# leading comment\npem-file = "c.pem" # trailing\n,;workers\n=\n4;\nbackend = "[127.0.0.1]:9000",\n#frontend = "[*]:1"\n',
  );
  assert.equal(config.workers, 4);
  assert.deepEqual(config.backend, { kind: 'tcp', host: '127.0.0.1', port: 9000 });
  assert.deepEqual(
    config.frontends.map((f) => f.address),
    [{ kind: 'tcp', host: undefined, port: 8443 }],
  );
});

test('CRLF line endings and a BOM are accepted', () => {
  const { config } = parse('\uFEFFpem-file = "c.pem"\r\nworkers = 2\r\n');
  assert.equal(config.workers, 2);
});

test('"" unsets an option back to its default', () => {
  const { config } = parse(
    `${PEM}user = "hitch"\nuser = ""\nciphers = "X"\nciphers = ""\nmetrics = "127.0.0.1:1"\nmetrics = ""\nfrontend = ""\n`,
  );
  assert.equal(config.user, undefined);
  assert.equal(config.tls.ciphers, DEFAULT_TLS.ciphers);
  assert.equal(config.metrics, undefined);
  assert.deepEqual(config.frontends[0]?.address, { kind: 'tcp', host: undefined, port: 8443 });
});

test('boolean spellings in any case, quoted or not', () => {
  for (const word of ['yes', 'Y', 'on', 'TRUE', 't', '"On"', '"yes"', 'True']) {
    assert.equal(parse(`${PEM}daemon = ${word}\n`).config.daemon, true, word);
  }
  for (const word of ['no', 'N', 'OFF', 'false', 'f', '"off"', '"F"', 'No']) {
    assert.equal(
      parse(`${PEM}tcp-fastopen = on\ntcp-fastopen = ${word}\n`).config.tcpFastOpen,
      false,
      word,
    );
  }
  expectError('daemon = 1\n', 'UNHITCH_CONFIG_INVALID_VALUE', 1, 10);
  expectError('daemon = "0"\n', 'UNHITCH_CONFIG_INVALID_VALUE', 1, 10);
});

test('daemon implies neither syslog nor quiet (Hitch 1.7 logs to syslog only with syslog = on)', () => {
  const { config } = parse(`${PEM}daemon = on\n`);
  assert.equal(config.daemon, true);
  assert.equal(config.syslog, false);
  assert.equal(config.quiet, false);
});

test('ports may be quoted or bare; [*], IPv4 and IPv6 hosts', () => {
  const { config } = parse(`${PEM}
    frontend = { host = "*" port = "443" }
    frontend = { host = "::1" port = 8443 }
    frontend = "[*]:80"
    frontend = "[::1]:81"
    frontend = "[192.0.2.1]:0"
    frontend = { port = "82" }
    frontend = { host = "[::]" port = "83" }
  `);
  assert.deepEqual(
    config.frontends.map((f) => f.address),
    [
      { kind: 'tcp', host: undefined, port: 443 },
      { kind: 'tcp', host: '::1', port: 8443 },
      { kind: 'tcp', host: undefined, port: 80 },
      { kind: 'tcp', host: '::1', port: 81 },
      { kind: 'tcp', host: '192.0.2.1', port: 0 },
      { kind: 'tcp', host: undefined, port: 82 },
      { kind: 'tcp', host: '::', port: 83 },
    ],
  );
});

test('repeated frontend and pem-file blocks, nested pem-file in a frontend', () => {
  const { config } = parse(`
    pem-file = "global1.pem"
    pem-file = { cert = "global2.crt" private-key = "global2.key" ocsp-resp-file = "global2.ocsp" }
    frontend = {
      host = "127.0.0.1"
      port = "443"
      pem-file = "site.pem"
      pem-file = { cert = "site2.crt" private-key = "site2.key" }
      match-global-certs = on
      sni-nomatch-abort = on
    }
    frontend = "[*]:8443+bound.pem"
  `);
  assert.deepEqual(config.pemFiles, [
    { certPath: 'global1.pem', privateKeyPath: undefined, ocspResponsePath: undefined },
    { certPath: 'global2.crt', privateKeyPath: 'global2.key', ocspResponsePath: 'global2.ocsp' },
  ]);
  const [first, second] = config.frontends;
  assert.deepEqual(first?.pemFiles, [
    { certPath: 'site.pem', privateKeyPath: undefined, ocspResponsePath: undefined },
    { certPath: 'site2.crt', privateKeyPath: 'site2.key', ocspResponsePath: undefined },
  ]);
  assert.equal(first?.matchGlobalCerts, true);
  assert.equal(first?.sniNomatchAbort, true);
  assert.equal(config.tls.sniNomatchAbort, false);
  assert.deepEqual(second?.pemFiles, [
    { certPath: 'bound.pem', privateKeyPath: undefined, ocspResponsePath: undefined },
  ]);
  assert.equal(second?.matchGlobalCerts, false);
});

test('frontends inherit global TLS settings set anywhere in the file, and may override them', () => {
  const { config } = parse(`${PEM}
    frontend = { port = "1" tls-protos = TLSv1.3 ciphers = "A" }
    frontend = { port = "2" }
    ciphers = "GLOBAL"
    prefer-server-ciphers = on
    tls-protos = TLSv1.2
  `);
  const [first, second] = config.frontends;
  assert.deepEqual(first?.tlsProtos, ['TLSv1.3']);
  assert.equal(first?.ciphers, 'A');
  assert.equal(first?.preferServerCiphers, true);
  assert.deepEqual(second?.tlsProtos, ['TLSv1.2']);
  assert.equal(second?.ciphers, 'GLOBAL');
});

test('tls-protos: list in canonical order; legacy protocols kept with one warning', () => {
  const { config, warnings } = parse(
    `${PEM}tls-protos = TLSv1.3 "TLSv1.0" TLSv1.2 SSLv3 TLSv1.1\n`,
  );
  assert.deepEqual(config.tls.tlsProtos, ['SSLv3', 'TLSv1.0', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3']);
  assert.deepEqual(
    warnings.map((w) => w.code),
    ['UNHITCH_CONFIG_LEGACY_PROTOCOL'],
  );
});

test('deprecated ssl/tls switches select Hitch protocol sets and warn', () => {
  const tls = parse(`${PEM}tls = on\n`);
  assert.deepEqual(tls.config.tls.tlsProtos, ['TLSv1.0', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3']);
  assert.ok(tls.warnings.some((w) => w.code === 'UNHITCH_CONFIG_DEPRECATED'));
  const off = parse(`${PEM}ssl = off\n`);
  assert.deepEqual(off.config.tls.tlsProtos, DEFAULT_TLS.tlsProtos);
  assert.ok(off.warnings.some((w) => /no effect/.test(w.message)));
});

test('log-level: Hitch numbers and pino names', () => {
  assert.equal(parse(`${PEM}log-level = 0\n`).config.logLevel, 'error');
  assert.equal(parse(`${PEM}log-level = 1\n`).config.logLevel, 'info');
  assert.equal(parse(`${PEM}log-level = 2\n`).config.logLevel, 'debug');
  assert.equal(parse(`${PEM}log-level = "warn"\n`).config.logLevel, 'warn');
  assert.equal(parse(`${PEM}log-level = trace\n`).config.logLevel, 'trace');
});

test('several alpn-protos without write-proxy-v2: accepted as Hitch 1.7.2 accepts it, with one warning naming the line', () => {
  const { config, warnings } = parse(`${PEM}alpn-protos = "h2,http/1.1"\n`);
  assert.deepEqual(config.alpnProtos, ['h2', 'http/1.1']);
  const alpn = warnings.filter((w) => w.code === 'UNHITCH_CONFIG_ALPN_UNSEEN');
  assert.equal(alpn.length, 1);
  assert.match(alpn[0]?.message ?? '', /:2:1: alpn-protos names more than one protocol/);
  // With write-proxy-v2 the backend learns the protocol: no warning.
  const v2 = parse(`${PEM}alpn-protos = "h2,http/1.1"\nwrite-proxy-v2 = on\n`);
  assert.equal(v2.warnings.filter((w) => w.code === 'UNHITCH_CONFIG_ALPN_UNSEEN').length, 0);
});

test('proxy modes map to the model', () => {
  assert.equal(parse(`${PEM}write-proxy-v1 = on\n`).config.proxyProtocol, 'v1');
  assert.equal(parse(`${PEM}write-proxy-v2 = on\n`).config.proxyProtocol, 'v2');
  assert.equal(parse(`${PEM}write-ip = on\n`).config.writeIp, true);
  assert.equal(parse(`${PEM}proxy-proxy = on\n`).config.proxyProxy, true);
  // Turning one off before turning another on is not a conflict.
  assert.equal(
    parse(`${PEM}write-ip = on\nwrite-ip = off\nwrite-proxy-v1 = on\n`).config.proxyProtocol,
    'v1',
  );
  assert.equal(
    parse(`${PEM}alpn-protos = "h2, http/1.1,"\nwrite-proxy-v2 = on\n`).config.alpnProtos.length,
    2,
  );
});

test('an unimplemented option warns exactly once however often it appears', () => {
  const { warnings } = parse(`${PEM}ssl-engine = "x"\nssl-engine = "y"\nsession-cache = 5\n`);
  const codes = warnings.map((w) => w.code);
  assert.deepEqual(codes, ['UNHITCH_CONFIG_UNIMPLEMENTED', 'UNHITCH_CONFIG_UNIMPLEMENTED']);
  assert.match(warnings[0]?.message ?? '', /^test\.conf:2:1: .*'ssl-engine'/);
});

test('no frontend means the default frontend; no certificate at all is an error', () => {
  const { config } = parse(PEM);
  assert.deepEqual(
    config.frontends.map((f) => f.address),
    [{ kind: 'tcp', host: undefined, port: 8443 }],
  );
  assert.throws(
    () => parse('workers = 1\n'),
    (err: unknown) => err instanceof ConfigError && err.code === 'UNHITCH_CONFIG_MISSING',
  );
  // A frontend with its own certificate needs no global one.
  assert.equal(parse('frontend = { port = "1" pem-file = "a.pem" }\n').config.pemFiles.length, 0);
});

const MALFORMED: ReadonlyArray<readonly [string, string, string, number, number]> = [
  ['missing =', 'backend = "[127.0.0.1]:3001"\nworkers 4\n', 'UNHITCH_CONFIG_SYNTAX', 2, 9],
  ['missing value at eof', 'workers = \n', 'UNHITCH_CONFIG_SYNTAX', 2, 1],
  ['value without name', '= 4\n', 'UNHITCH_CONFIG_SYNTAX', 1, 1],
  ['quoted option name', '"workers" = 4\n', 'UNHITCH_CONFIG_SYNTAX', 1, 1],
  ['unclosed block', 'frontend = {\n  port = "443"\n', 'UNHITCH_CONFIG_SYNTAX', 3, 1],
  ['stray }', '\n  }\n', 'UNHITCH_CONFIG_SYNTAX', 2, 3],
  ['unterminated string', 'user = "abc\n', 'UNHITCH_CONFIG_SYNTAX', 1, 8],
  ['string across lines', 'user = "ab\nc"\n', 'UNHITCH_CONFIG_SYNTAX', 1, 8],
  ['bad character', 'workers = 4 $\n', 'UNHITCH_CONFIG_SYNTAX', 1, 13],
  ['= as value', 'workers = = 4\n', 'UNHITCH_CONFIG_SYNTAX', 1, 11],
  ['unknown option', 'bogus = 1\n', 'UNHITCH_CONFIG_UNKNOWN_OPTION', 1, 1],
  ['unknown option indented', '\n\n   frobnicate = on\n', 'UNHITCH_CONFIG_UNKNOWN_OPTION', 3, 4],
  [
    'unknown in frontend',
    'frontend = { port = "443" bogus = 1 }\n',
    'UNHITCH_CONFIG_UNKNOWN_OPTION',
    1,
    27,
  ],
  ['host at top level', 'host = "x"\n', 'UNHITCH_CONFIG_UNKNOWN_OPTION', 1, 1],
  ['port at top level', '# c\nport = 443\n', 'UNHITCH_CONFIG_UNKNOWN_OPTION', 2, 1],
  [
    'global option in frontend',
    'frontend = { workers = 2 port = 1 }\n',
    'UNHITCH_CONFIG_UNKNOWN_OPTION',
    1,
    14,
  ],
  [
    'frontend in frontend',
    'frontend = { port = "443" frontend = { port = "1" } }\n',
    'UNHITCH_CONFIG_UNKNOWN_OPTION',
    1,
    27,
  ],
  [
    'unknown in pem-file',
    'pem-file = { cert = "a" cert2 = "b" }\n',
    'UNHITCH_CONFIG_UNKNOWN_OPTION',
    1,
    25,
  ],
  ['bool 1', 'daemon = 1\n', 'UNHITCH_CONFIG_INVALID_VALUE', 1, 10],
  ['bool 0', 'quiet = 0\n', 'UNHITCH_CONFIG_INVALID_VALUE', 1, 9],
  ['bool maybe', 'syslog = "maybe"\n', 'UNHITCH_CONFIG_INVALID_VALUE', 1, 10],
  ['workers 0', 'workers = 0\n', 'UNHITCH_CONFIG_INVALID_VALUE', 1, 11],
  ['workers negative', 'workers = -1\n', 'UNHITCH_CONFIG_INVALID_VALUE', 1, 11],
  ['workers word', 'workers = four\n', 'UNHITCH_CONFIG_INVALID_VALUE', 1, 11],
  ['backlog fraction', 'backlog = 1.5\n', 'UNHITCH_CONFIG_INVALID_VALUE', 1, 11],
  ['workers two values', 'workers = 1 2\n', 'UNHITCH_CONFIG_INVALID_VALUE', 1, 13],
  ['block for scalar', 'keepalive = { a = 1 }\n', 'UNHITCH_CONFIG_INVALID_VALUE', 1, 13],
  ['frontend port too big', 'frontend = "[*]:70000"\n', 'UNHITCH_CONFIG_INVALID_VALUE', 1, 12],
  ['frontend without brackets', 'frontend = "*:443"\n', 'UNHITCH_CONFIG_INVALID_VALUE', 1, 12],
  ['frontend without port', 'frontend = "[*]"\n', 'UNHITCH_CONFIG_INVALID_VALUE', 1, 12],
  [
    'frontend block bad port',
    'frontend = { port = "http" }\n',
    'UNHITCH_CONFIG_INVALID_VALUE',
    1,
    21,
  ],
  ['frontend block no port', '\nfrontend = { host = "*" }\n', 'UNHITCH_CONFIG_MISSING', 2, 1],
  ['backend wildcard', 'backend = "[*]:8000"\n', 'UNHITCH_CONFIG_INVALID_VALUE', 1, 11],
  ['backend port 0', 'backend = "[127.0.0.1]:0"\n', 'UNHITCH_CONFIG_INVALID_VALUE', 1, 11],
  [
    'pem-file block without cert',
    'pem-file = { private-key = "k.pem" }\n',
    'UNHITCH_CONFIG_MISSING',
    1,
    1,
  ],
  ['unknown TLS protocol', 'tls-protos = TLSv1.2 TLSv1.4\n', 'UNHITCH_CONFIG_INVALID_VALUE', 1, 22],
  [
    'tls-protos twice',
    'tls-protos = TLSv1.2\ntls-protos = TLSv1.3\n',
    'UNHITCH_CONFIG_CONFLICT',
    2,
    1,
  ],
  [
    'tls after tls-protos in frontend',
    'frontend = {\n port = 1\n tls-protos = TLSv1.2\n tls = on\n}\n',
    'UNHITCH_CONFIG_CONFLICT',
    4,
    2,
  ],
  ['log level 3', 'log-level = 3\n', 'UNHITCH_CONFIG_INVALID_VALUE', 1, 13],
  ['empty ALPN entry', 'alpn-protos = "h2,,http/1.1"\n', 'UNHITCH_CONFIG_INVALID_VALUE', 1, 15],
  [
    'two proxy modes',
    'write-ip = on\nwrite-proxy-v2 = on\npem-file = "c.pem"\n',
    'UNHITCH_CONFIG_CONFLICT',
    2,
    1,
  ],
  ['frontend without any certificate', 'frontend = "[*]:443"\n', 'UNHITCH_CONFIG_MISSING', 1, 1],
  ['metrics without port', 'metrics = "localhost"\n', 'UNHITCH_CONFIG_INVALID_VALUE', 1, 11],
  [
    'bad source address',
    'backend-source-addresses = "10.0.0.1, nope"\n',
    'UNHITCH_CONFIG_INVALID_VALUE',
    1,
    28,
  ],
  ['negative drain timeout', 'drain-timeout = -5\n', 'UNHITCH_CONFIG_INVALID_VALUE', 1, 17],
  ['sub-second ticket rotation', 'ticket-rotation = 0.5\n', 'UNHITCH_CONFIG_INVALID_VALUE', 1, 19],
  ['block for user', 'user = { }\n', 'UNHITCH_CONFIG_INVALID_VALUE', 1, 8],
  [
    'unimplemented option still validated',
    'ocsp-connect-tmo = x\n',
    'UNHITCH_CONFIG_INVALID_VALUE',
    1,
    20,
  ],
  ['pin-workers 1', 'pin-workers = 1\n', 'UNHITCH_CONFIG_INVALID_VALUE', 1, 15],
];

test(`${MALFORMED.length} malformed inputs report the exact line:column and code`, () => {
  assert.ok(MALFORMED.length >= 30);
  for (const [label, text, code, line, column] of MALFORMED) {
    try {
      expectError(text, code, line, column);
    } catch (err) {
      assert.fail(`${label}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
});

test('syntax errors say what was expected', () => {
  const err = expectError(
    'backend = "[127.0.0.1]:3001"\nworkers 4\n',
    'UNHITCH_CONFIG_SYNTAX',
    2,
    9,
  );
  assert.match(err.message, /expected '=' after 'workers'/);
  assert.equal(err.expected, "'=' after 'workers'");
});
