/**
 * Per-client limits on their own (src/proxy/limits.ts): how an address becomes a client
 * (IPv6 prefixes, IPv4-mapped addresses), each limit with a clock the test moves, the
 * bounds of every map; and the deny file's and deny-repeat-offenders' syntax.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { BanTable } from '../../src/cluster/bans.js';
import { parseDenyList, parseDenyRange } from '../../src/config/deny-file.js';
import { ConfigError } from '../../src/config/errors.js';
import { parseCommandLine } from '../../src/config/load.js';
import { DEFAULT_CONFIG } from '../../src/config/model.js';
import { preflight } from '../../src/ops/preflight.js';
import {
  ClientLimiter,
  type ClientLimitSettings,
  clientKey,
  hasClientLimits,
  MAX_TRACKED_CLIENTS,
} from '../../src/proxy/limits.js';
import { makeCertificate } from '../kit/pki.js';

const OFF: ClientLimitSettings = {
  perIpMaxConnections: 0,
  perIpIpv6Prefix: 64,
  perIpConnectionRate: 0,
  denyList: [],
  denyRepeatOffenders: undefined,
};

function fakeClock() {
  const clock = { monotonicMs: 0, wallMs: 1_000_000 };
  return {
    clock,
    source: { monotonic: () => clock.monotonicMs, wall: () => clock.wallMs },
    advance(ms: number) {
      clock.monotonicMs += ms;
      clock.wallMs += ms;
    },
  };
}

test('clientKey: IPv4 as is, IPv4-mapped unmapped, IPv6 cut to its prefix, junk undefined', () => {
  assert.equal(clientKey('127.0.0.2', 64), '127.0.0.2');
  assert.equal(clientKey('::ffff:127.0.0.2', 64), '127.0.0.2');
  assert.equal(clientKey('::ffff:7f00:2', 64), '127.0.0.2');
  assert.equal(clientKey('2001:db8:1:2:aaaa::1', 64), '2001:db8:1:2::/64');
  assert.equal(clientKey('2001:db8:1:2:bbbb::9', 64), '2001:db8:1:2::/64');
  assert.equal(clientKey('2001:db8:1:3::1', 64), '2001:db8:1:3::/64');
  assert.equal(clientKey('2001:db8:1:2:aaaa::1', 48), '2001:db8:1::/48');
  assert.equal(clientKey('2001:db8:1:2:aaaa::1', 128), '2001:db8:1:2:aaaa::1/128');
  assert.equal(clientKey('2001:db8:1:2:aaaa::1', 60), '2001:db8:1::/60');
  assert.equal(clientKey('2001:db8:1:1f::1', 60), '2001:db8:1:10::/60');
  assert.equal(clientKey('::1', 64), '::/64');
  assert.equal(clientKey('fe80::1%eth0', 64), 'fe80::/64');
  assert.equal(clientKey('', 64), undefined);
  assert.equal(clientKey('localhost', 64), undefined);
  assert.equal(clientKey('::ffff:1.2.3', 64), undefined);
});

test('hasClientLimits: nothing configured by default', () => {
  assert.equal(hasClientLimits(DEFAULT_CONFIG), false);
  assert.equal(hasClientLimits({ ...OFF, perIpConnectionRate: 1 }), true);
});

test('per-ip-max-connections: the N+1th of one client is refused, another client is not, a release frees a slot', () => {
  const limiter = new ClientLimiter({ ...OFF, perIpMaxConnections: 2 });
  const a1 = limiter.admit('127.0.0.2');
  const a2 = limiter.admit('::ffff:127.0.0.2');
  assert.deepEqual(a1, { refused: undefined, key: '127.0.0.2', counted: true });
  assert.equal(a2?.refused, undefined);
  assert.equal(limiter.admit('127.0.0.2')?.refused, 'per_ip_max_connections');
  assert.equal(limiter.admit('127.0.0.3')?.refused, undefined);
  // Two addresses of one /64 are one client.
  assert.equal(limiter.admit('2001:db8::1')?.refused, undefined);
  assert.equal(limiter.admit('2001:db8::2')?.refused, undefined);
  assert.equal(limiter.admit('2001:db8::3')?.refused, 'per_ip_max_connections');
  assert.equal(limiter.admit('2001:db8:0:1::3')?.refused, undefined);
  limiter.release('127.0.0.2');
  assert.equal(limiter.admit('127.0.0.2')?.refused, undefined);
  limiter.release('127.0.0.2');
  limiter.release('127.0.0.2');
  limiter.release('127.0.0.3');
  assert.equal(limiter.tracked.open, 2, 'only the two IPv6 clients are left');
  // Not an IP address (a unix socket, a LOCAL PROXY header): not limited.
  assert.equal(limiter.admit(''), undefined);
});

test('per-ip-connection-rate: a burst of N, then N per second; idle buckets are swept', () => {
  const time = fakeClock();
  const limiter = new ClientLimiter({ ...OFF, perIpConnectionRate: 4 }, {}, time.source);
  const reasons = () => Array.from({ length: 6 }, () => limiter.admit('127.0.0.2')?.refused);
  assert.deepEqual(reasons(), [
    undefined,
    undefined,
    undefined,
    undefined,
    'per_ip_rate',
    'per_ip_rate',
  ]);
  assert.equal(limiter.admit('127.0.0.3')?.refused, undefined, 'another client has its own');
  time.advance(500); // two tokens back
  assert.deepEqual(reasons(), [
    undefined,
    undefined,
    'per_ip_rate',
    'per_ip_rate',
    'per_ip_rate',
    'per_ip_rate',
  ]);
  assert.equal(limiter.tracked.buckets, 2);
  time.advance(1_000);
  limiter.admit('127.0.0.9');
  assert.equal(limiter.tracked.buckets, 1, 'full buckets are dropped');
});

test('deny list: addresses and ranges of both families; IPv4-mapped clients match IPv4 ranges', () => {
  const limiter = new ClientLimiter({
    ...OFF,
    denyList: parseDenyList('127.0.0.3\n10.0.0.0/8\n2001:db8::/32\n::ffff:192.0.2.0/120\n', 'x'),
  });
  assert.equal(limiter.admit('127.0.0.3')?.refused, 'denied');
  assert.equal(limiter.admit('::ffff:127.0.0.3')?.refused, 'denied');
  assert.equal(limiter.admit('127.0.0.2')?.refused, undefined);
  assert.equal(limiter.admit('10.200.1.1')?.refused, 'denied');
  assert.equal(limiter.admit('2001:db8:ffff::1')?.refused, 'denied');
  assert.equal(limiter.admit('2001:db9::1')?.refused, undefined);
  assert.equal(limiter.admit('192.0.2.77')?.refused, 'denied');
});

test('deny list: a single IPv6 host is matched as a host, not as its /64', () => {
  const limiter = new ClientLimiter({ ...OFF, denyList: ['2001:db8::1/128'] });
  assert.equal(limiter.admit('2001:db8::1')?.refused, 'denied');
  assert.equal(limiter.admit('2001:db8::2')?.refused, undefined);
});

test('deny file syntax: comments, blank lines, CRLF; a bad line names file:line:column and what was expected', () => {
  assert.deepEqual(
    parseDenyList(
      '# scanners\r\n\r\n  192.0.2.1   # one host\n198.51.100.0/24\n2001:DB8::/32\n',
      'deny.txt',
    ),
    ['192.0.2.1/32', '198.51.100.0/24', '2001:db8::/32'],
  );
  const bad = (text: string) => {
    try {
      parseDenyList(text, '/etc/deny.txt');
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      return error.message;
    }
    assert.fail('no error');
  };
  assert.match(
    bad('10.0.0.0/8\n   10.0.0.0/33\n'),
    /^\/etc\/deny\.txt:2:4: not an address or range: "10\.0\.0\.0\/33" \(expected an IPv4 or IPv6 address/,
  );
  assert.match(bad('# x\n1.2.3.4 5.6.7.8\n'), /^\/etc\/deny\.txt:2:9: unexpected "5\.6\.7\.8"/);
  assert.match(bad('example.com\n'), /^\/etc\/deny\.txt:1:1: /);
  assert.equal(parseDenyRange('1.2.3.4/'), undefined);
  assert.equal(parseDenyRange('1.2.3.4/-1'), undefined);
  assert.equal(parseDenyRange('::/129'), undefined);
  assert.equal(parseDenyRange('fe80::1%eth0'), undefined);
  assert.equal(parseDenyRange('0.0.0.0/0'), '0.0.0.0/0');
});

test('deny-repeat-offenders: N offending failures in the window ban the client, the ban is announced and ends', () => {
  const time = fakeClock();
  const banned: Array<[string, number]> = [];
  const limiter = new ClientLimiter(
    { ...OFF, denyRepeatOffenders: { failures: 3, windowMs: 10_000, banMs: 60_000 } },
    { banned: (client, until) => banned.push([client, until]) },
    time.source,
  );
  limiter.failed('127.0.0.2', 'not_tls');
  limiter.failed('127.0.0.2', 'client_reset'); // a hang-up is no offence
  limiter.failed('127.0.0.2', 'handshake_error');
  assert.equal(limiter.admit('127.0.0.2')?.refused, undefined);
  time.advance(10_000); // the window ended: counting starts again
  limiter.failed('127.0.0.2', 'not_tls');
  limiter.failed('127.0.0.2', 'not_tls');
  assert.equal(banned.length, 0);
  limiter.failed('127.0.0.2', 'handshake_timeout');
  assert.deepEqual(banned, [['127.0.0.2', time.clock.wallMs + 60_000]]);
  assert.equal(limiter.admit('127.0.0.2')?.refused, 'repeat_offender');
  assert.equal(limiter.admit('127.0.0.3')?.refused, undefined);
  time.advance(60_000);
  assert.equal(limiter.admit('127.0.0.2')?.refused, undefined);
  assert.equal(limiter.tracked.bans, 0);
});

test('a ban from another worker holds here', () => {
  const limiter = new ClientLimiter({
    ...OFF,
    denyRepeatOffenders: { failures: 3, windowMs: 1_000, banMs: 1_000 },
  });
  limiter.ban('2001:db8::/64', Date.now() + 60_000);
  assert.equal(limiter.admit('2001:db8::77')?.refused, 'repeat_offender');
  assert.equal(limiter.admit('2001:db8:0:1::77')?.refused, undefined);
});

test('bounds: past MAX_TRACKED_CLIENTS new clients are admitted uncounted, buckets make room', () => {
  // A clock that stands still: no bucket refills (and is swept) while the test fills them.
  const limiter = new ClientLimiter(
    { ...OFF, perIpMaxConnections: 1, perIpConnectionRate: 1 },
    {},
    fakeClock().source,
  );
  const address = (index: number) =>
    `10.${(index >> 16) & 255}.${(index >> 8) & 255}.${index & 255}`;
  for (let index = 0; index < MAX_TRACKED_CLIENTS; index++) limiter.admit(address(index));
  assert.equal(limiter.tracked.open, MAX_TRACKED_CLIENTS);
  const extra = limiter.admit('192.0.2.1');
  assert.deepEqual(extra, { refused: undefined, key: '192.0.2.1', counted: false });
  assert.equal(limiter.tracked.open, MAX_TRACKED_CLIENTS);
  assert.equal(limiter.tracked.buckets, MAX_TRACKED_CLIENTS);
  // The oldest bucket made room: 10.0.0.0 starts afresh, but its connection is still open.
  assert.equal(limiter.admit(address(0))?.refused, 'per_ip_max_connections');
});

test('the primary keeps the later end of a ban and forgets ended ones', () => {
  let now = 1_000;
  const table = new BanTable(() => now);
  table.add({ client: '127.0.0.2', untilMs: 5_000 });
  table.add({ client: '127.0.0.2', untilMs: 3_000 });
  table.add({ client: '127.0.0.3', untilMs: 2_000 });
  assert.deepEqual(table.live(), [
    { client: '127.0.0.2', untilMs: 5_000 },
    { client: '127.0.0.3', untilMs: 2_000 },
  ]);
  now = 2_000;
  assert.deepEqual(table.live(), [{ client: '127.0.0.2', untilMs: 5_000 }]);
});

test('options: hitch.conf, TOML and flags set the same limits; a bad deny file stops the start and --test at its line', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-limits-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cert = makeCertificate('limits-unit', ['localhost']);
  const deny = join(dir, 'deny.txt');
  writeFileSync(deny, '192.0.2.0/24\n');
  const conf = join(dir, 'hitch.conf');
  writeFileSync(
    conf,
    [
      'frontend = "[127.0.0.1]:8443"',
      `pem-file = "${cert.combinedPath}"`,
      'per-ip-max-connections = 8',
      'per-ip-ipv6-prefix = 56',
      'per-ip-connection-rate = 20',
      `deny-file = "${deny}"`,
      'deny-repeat-offenders = "5/60s:10m"',
      '',
    ].join('\n'),
  );
  const toml = join(dir, 'unhitch.toml');
  writeFileSync(
    toml,
    [
      'frontend = "[127.0.0.1]:8443"',
      `pem-file = "${cert.combinedPath}"`,
      'per-ip-max-connections = 8',
      'per-ip-ipv6-prefix = 56',
      'per-ip-connection-rate = 20',
      `deny-file = "${deny}"`,
      'deny-repeat-offenders = "5/60s:10m"',
      '',
    ].join('\n'),
  );
  const expected = {
    perIpMaxConnections: 8,
    perIpIpv6Prefix: 56,
    perIpConnectionRate: 20,
    denyFile: deny,
    denyList: ['192.0.2.0/24'],
    denyRepeatOffenders: { failures: 5, windowMs: 60_000, banMs: 600_000 },
  };
  const configOf = (argv: string[]) => {
    const action = parseCommandLine(argv);
    assert.equal(action.kind, 'run');
    return (action as Extract<typeof action, { kind: 'run' }>).config;
  };
  // The deny file is read with the certificates, by the start, --test and every reload.
  const loaded = async (argv: string[]) =>
    (await preflight(configOf(argv), { isRoot: false, mode: 'test' })).config;
  const limitsOf = async (argv: string[]) => {
    const config = await loaded(argv);
    return {
      perIpMaxConnections: config.perIpMaxConnections,
      perIpIpv6Prefix: config.perIpIpv6Prefix,
      perIpConnectionRate: config.perIpConnectionRate,
      denyFile: config.denyFile,
      denyList: [...config.denyList],
      denyRepeatOffenders: config.denyRepeatOffenders && { ...config.denyRepeatOffenders },
    };
  };
  assert.deepEqual(configOf([`--config=${conf}`]).denyList, [], 'not read by the parser');
  assert.deepEqual(await limitsOf([`--config=${conf}`]), expected);
  assert.deepEqual(await limitsOf([`--config=${toml}`]), expected);
  assert.deepEqual(
    await limitsOf([
      '--frontend=[127.0.0.1]:8443',
      '--per-ip-max-connections=8',
      '--per-ip-ipv6-prefix=56',
      '--per-ip-connection-rate=20',
      `--deny-file=${deny}`,
      '--deny-repeat-offenders=5/60s:10m',
      cert.combinedPath,
    ]),
    expected,
  );
  writeFileSync(deny, '192.0.2.0/24\n\n  not-an-address\n');
  await assert.rejects(loaded([`--config=${conf}`]), {
    code: 'UNHITCH_CONFIG_INVALID_VALUE',
    message: new RegExp(`^${deny.replaceAll('.', '\\.')}:3:3: not an address or range`),
  });
  await assert.rejects(loaded([`--config=${conf}`, `--deny-file=${dir}/missing`]), {
    code: 'UNHITCH_CONFIG_FILE',
    message: /cannot read deny-file '.*missing' \(ENOENT\)/,
  });
  for (const bad of ['5/60s', '0/60s:10m', '5/0:10m', '5/60x:10m', 'five'])
    assert.throws(() => parseCommandLine([`--config=${toml}`, `--deny-repeat-offenders=${bad}`]), {
      code: 'UNHITCH_CONFIG_INVALID_VALUE',
    });
  assert.throws(() => parseCommandLine([`--config=${toml}`, '--per-ip-ipv6-prefix=129']), {
    code: 'UNHITCH_CONFIG_INVALID_VALUE',
  });
});
