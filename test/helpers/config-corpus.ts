/**
 * The generated corpus of hitch.conf files, good and bad in the ways operators get them
 * wrong (certificates, keys, ciphers, curves, protocol lists in conflicting orders,
 * duplicate addresses, users, pidfile and log paths, ticket key files, syntax): about
 * half have no fault, the rest one or two. test-equals-start runs it through
 * `unhitch --test` and a real start; hitch-differential through `hitch --test` too.
 */
import { chmodSync, copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { makeSelfSigned } from '../../src/tls/selfsigned.js';

export type Dialect = 'unhitch' | 'hitch';

export interface CorpusCase {
  readonly text: string;
  /** Flags for the command line beside `--config=FILE`. */
  readonly args: readonly string[];
}

export interface Fixtures {
  readonly dir: string;
  readonly combined: string;
  readonly cert: string;
  readonly key: string;
  readonly otherKey: string;
  readonly junk: string;
  readonly badTicketKey: string;
}

export function makeFixtures(dir: string): Fixtures {
  const site = makeSelfSigned({ dir, stem: 'site' });
  const other = makeSelfSigned({ dir, stem: 'other' });
  for (const path of [site.combinedPath, site.keyPath, other.keyPath]) chmodSync(path, 0o600);
  const junk = join(dir, 'junk.pem');
  writeFileSync(junk, 'not a certificate\n');
  const badTicketKey = join(dir, 'bad-ticket.key');
  writeFileSync(badTicketKey, 'too short', { mode: 0o600 });
  const otherKey = join(dir, 'other-copy.key');
  copyFileSync(other.keyPath, otherKey);
  return {
    dir,
    combined: site.combinedPath,
    cert: site.certPath,
    key: site.keyPath,
    otherKey,
    junk,
    badTicketKey,
  };
}

/**
 * One generated config: a variation of a config that should start, plus zero to two
 * faults, each one way a start is refused. About half the corpus has no fault.
 */
export interface Shape {
  readonly frontends: 'one' | 'two' | 'block';
  readonly pem: 'combined' | 'pair';
  readonly ciphers: string | undefined;
  readonly ciphersuites: string | undefined;
  readonly ecdhCurve: string | undefined;
  readonly protos: string | undefined;
  readonly blockProtos: string | undefined;
  readonly user: string | undefined;
  readonly ocspVerify: boolean;
  readonly pidfile: boolean;
  readonly logFile: boolean;
  readonly alpn: 'none' | 'one' | 'two-with-v2' | 'two-without-v2';
  readonly ticketKey: boolean;
  readonly faults: readonly Fault[];
}

export const FAULTS = [
  'same-address-twice',
  'ipv6-spelled-twice',
  'pem-missing',
  'pem-not-pem',
  'pem-wrong-key',
  'bad-ciphers',
  'bad-ciphersuites',
  'bad-curve',
  'tls-after-tls-protos',
  'tls-protos-after-ssl',
  'ssl-after-tls',
  'tls-protos-twice',
  'block-tls-after-tls-protos',
  'unservable-protos',
  'missing-user',
  // As root: no `user`, so the workers would be root (Hitch and unhitch refuse).
  'no-user',
  'pidfile-dir-missing',
  'log-dir-missing',
  'log-under-a-file',
  'bad-ticket-key',
  'syntax-error',
  'unknown-option',
] as const;
export type Fault = (typeof FAULTS)[number];

const maybe = <T>(arbitrary: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> =>
  fc.option(arbitrary, { nil: undefined, freq: 2 });

const GOOD_PROTOS = fc.constantFrom(
  'tls-protos = TLSv1.2 TLSv1.3',
  'tls-protos = TLSv1.3',
  'tls-protos = TLSv1.2',
  'tls = on',
  'ssl = on',
  // `tls = off` selects nothing, so a tls-protos may follow (Hitch's parser agrees).
  'tls = off\ntls-protos = TLSv1.3',
);

export const SHAPE: fc.Arbitrary<Shape> = fc.record({
  frontends: fc.constantFrom('one', 'two', 'block'),
  pem: fc.constantFrom('combined', 'pair'),
  ciphers: maybe(fc.constantFrom('EECDH+AESGCM', 'HIGH:!aNULL')),
  ciphersuites: maybe(fc.constantFrom('TLS_AES_128_GCM_SHA256', 'TLS_CHACHA20_POLY1305_SHA256')),
  ecdhCurve: maybe(fc.constantFrom('auto', 'prime256v1', 'X25519:prime256v1')),
  protos: maybe(GOOD_PROTOS),
  blockProtos: maybe(GOOD_PROTOS),
  user: maybe(fc.constant('nobody')),
  ocspVerify: fc.boolean(),
  pidfile: fc.boolean(),
  logFile: fc.boolean(),
  alpn: fc.constantFrom('none', 'one', 'two-with-v2', 'two-without-v2'),
  ticketKey: fc.boolean(),
  faults: fc.oneof(
    fc.constant([] as Fault[]),
    fc.subarray([...FAULTS], { minLength: 1, maxLength: 2 }),
  ),
});

/**
 * One generated case: the config file's text and the command-line flags that go with it.
 * `hitch` writes it for the real Hitch 1.7: without unhitch's own options (pin-workers,
 * ticket-key-file) and with the pidfile as Hitch's flag (Hitch has no `pidfile` setting).
 */
export function corpusCase(
  shape: Shape,
  fx: Fixtures,
  ports: readonly number[],
  runDir: string,
  dialect: Dialect = 'unhitch',
): CorpusCase {
  const unhitch = dialect === 'unhitch';
  const args: string[] = [];
  const has = (fault: Fault): boolean => shape.faults.includes(fault);
  const [a = 0, b = 0] = ports;
  const lines: string[] = [];
  if (has('same-address-twice')) {
    lines.push(`frontend = "[127.0.0.1]:${a}"`, `frontend = "[127.0.0.1]:${a}"`);
  } else if (has('ipv6-spelled-twice')) {
    lines.push(`frontend = "[::1]:${a}"`, `frontend = "[0:0::1]:${a}"`);
  } else if (shape.frontends === 'one') {
    lines.push(`frontend = "[127.0.0.1]:${a}"`);
  } else if (shape.frontends === 'two') {
    lines.push(`frontend = "[127.0.0.1]:${a}"`, `frontend = "[::1]:${b}"`);
  } else {
    const blockProtos = has('block-tls-after-tls-protos')
      ? 'tls-protos = TLSv1.2\ntls = on'
      : (shape.blockProtos ?? '');
    lines.push(
      'frontend = {',
      '  host = "127.0.0.1"',
      `  port = "${a}"`,
      ...blockProtos
        .split('\n')
        .filter(Boolean)
        .map((line) => `  ${line}`),
      '}',
    );
  }
  lines.push('backend = "[127.0.0.1]:9"', 'workers = 1');
  if (unhitch) lines.push('pin-workers = off');
  if (has('pem-missing')) lines.push(`pem-file = "${join(fx.dir, 'missing.pem')}"`);
  else if (has('pem-not-pem')) lines.push(`pem-file = "${fx.junk}"`);
  else if (has('pem-wrong-key'))
    lines.push('pem-file = {', `  cert = "${fx.cert}"`, `  private-key = "${fx.otherKey}"`, '}');
  else if (shape.pem === 'combined') lines.push(`pem-file = "${fx.combined}"`);
  else lines.push('pem-file = {', `  cert = "${fx.cert}"`, `  private-key = "${fx.key}"`, '}');

  const ciphers = has('bad-ciphers') ? 'NO-SUCH-CIPHER' : shape.ciphers;
  if (ciphers !== undefined) lines.push(`ciphers = "${ciphers}"`);
  const suites = has('bad-ciphersuites') ? 'TLS_NO_SUCH_SUITE' : shape.ciphersuites;
  if (suites !== undefined) lines.push(`ciphersuites = "${suites}"`);
  const curve = has('bad-curve') ? 'no-such-curve' : shape.ecdhCurve;
  if (curve !== undefined) lines.push(`ecdh-curve = "${curve}"`);

  const protos = has('tls-after-tls-protos')
    ? 'tls-protos = TLSv1.2\ntls = on'
    : has('tls-protos-after-ssl')
      ? 'ssl = on\ntls-protos = TLSv1.3'
      : has('ssl-after-tls')
        ? 'tls = on\nssl = on'
        : has('tls-protos-twice')
          ? 'tls-protos = TLSv1.2\ntls-protos = TLSv1.3'
          : has('unservable-protos')
            ? 'tls-protos = SSLv3'
            : shape.protos;
  if (protos !== undefined) lines.push(...protos.split('\n'));

  // As root every config names a user unless the fault is its absence: without one, a
  // root start is refused ("Refusing to run workers as root."), so no config would start.
  const user = has('missing-user')
    ? 'no-such-user-7e57'
    : has('no-user')
      ? undefined
      : (shape.user ?? (process.getuid?.() === 0 ? 'nobody' : undefined));
  if (user !== undefined) lines.push(`user = "${user}"`);
  if (shape.ocspVerify) lines.push('ocsp-verify-staple = on');
  const pidfile = has('pidfile-dir-missing')
    ? join(runDir, 'no/dir/u.pid')
    : shape.pidfile
      ? join(runDir, 'u.pid')
      : undefined;
  if (pidfile !== undefined) {
    if (unhitch) lines.push(`pidfile = "${pidfile}"`);
    else args.push(`--pidfile=${pidfile}`);
  }
  // A missing directory is created (mkdir -p); one that is a regular file cannot be.
  if (has('log-dir-missing')) lines.push(`log-filename = "${join(runDir, 'new/dir/u.log')}"`);
  else if (has('log-under-a-file')) lines.push(`log-filename = "${fx.junk}/u.log"`);
  else if (shape.logFile) lines.push(`log-filename = "${join(runDir, 'u.log')}"`);
  if (shape.alpn === 'two-without-v2') lines.push('alpn-protos = "h2,http/1.1"');
  else if (shape.alpn === 'one') lines.push('alpn-protos = "http/1.1"');
  else if (shape.alpn === 'two-with-v2')
    lines.push('alpn-protos = "h2,http/1.1"', 'write-proxy-v2 = on');
  if (!unhitch) {
    // unhitch's own option: nothing to write for Hitch.
  } else if (has('bad-ticket-key')) lines.push(`ticket-key-file = "${fx.badTicketKey}"`);
  else if (shape.ticketKey) lines.push(`ticket-key-file = "${join(runDir, 'tickets.key')}"`);
  if (has('syntax-error')) lines.push('workers 2');
  if (has('unknown-option')) lines.push('frobnicate = on');
  return { text: `${lines.join('\n')}\n`, args };
}

export function configText(
  shape: Shape,
  fx: Fixtures,
  ports: readonly number[],
  runDir: string,
): string {
  return corpusCase(shape, fx, ports, runDir).text;
}
