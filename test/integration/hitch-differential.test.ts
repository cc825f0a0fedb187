/**
 * The same scenario against the installed `hitch` (1.7.2 here and in CI) and `unhitch`,
 * asserting the same observable result: `--test` over the generated config corpus (exit
 * status and what the first stderr line means), the dbg-listen file, PROXY v1/v2 bytes,
 * the TLS alert a refused client receives, SIGHUP with a broken config, and the exit
 * status of --help/--version/a bad flag. Each disagreement that remains is in DELIBERATE
 * (or named where node cannot do what Hitch does), with its reason; docs/pending lists
 * the same as "Differences from Hitch". Skipped only when Hitch is not installed.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { type ConnectionOptions, connect, type TLSSocket } from 'node:tls';
import fc from 'fast-check';
import { OPTIONS } from '../../src/config/options/table.js';
import {
  corpusCase,
  FAULTS,
  type Fault,
  type Fixtures,
  makeFixtures,
  SHAPE,
  type Shape,
} from '../helpers/config-corpus.js';
import {
  type Both,
  HITCH_CANDIDATES,
  hitchBinary,
  type Implementation,
  meaningOf,
  observeBoth,
  runBoth,
  type Served,
  type ServeOptions,
  verdictLine,
} from '../helpers/hitch-differential.js';
import { issue, makeCa } from '../kit/pki.js';
import { freePort } from '../kit/ports.js';

const skip = hitchBinary() === undefined ? 'hitch is not installed (apt-get install hitch)' : false;
const isRoot = process.getuid?.() === 0;

test('hitch is installed where .ci/run installed it (UNHITCH_REQUIRE_HITCH=1): the differential tests run, not skip', {
  skip:
    process.env.UNHITCH_REQUIRE_HITCH === '1'
      ? false
      : 'only in CI (.ci/run sets UNHITCH_REQUIRE_HITCH=1)',
}, () => {
  assert.ok(hitchBinary(), `no hitch binary in ${HITCH_CANDIDATES.join(', ')}`);
});

/**
 * Where `--test` deliberately disagrees with Hitch 1.7.2's `--test`, by corpus fault.
 * A case with one of these faults may differ in exit status and meaning; with the fault
 * alone it must differ (operations.md lists each: an entry both now agree on is stale).
 */
const DELIBERATE: Partial<Record<Fault, string>> = {
  'pidfile-dir-missing':
    "unhitch --test checks everything the start would stop on (ops/preflight.ts), the pidfile too; Hitch's --test does not look at it, its start then fails",
  'ipv6-spelled-twice':
    'unhitch compares frontend addresses, not their text: [::1] and [0:0::1] are one socket; Hitch compares the text and binds both (SO_REUSEPORT)',
  'bad-curve':
    'an ecdh-curve OpenSSL does not know is refused; Hitch logs "Configuring ecdh curves … failed" and serves with the default groups',
  'log-dir-missing':
    "unhitch creates a log file's missing directories (mkdir -p); Hitch cannot open the file and exits 2",
  'log-under-a-file':
    'a log file that cannot be opened exits 1 like every other start-up failure (UNHITCH_LOG_FILE); Hitch exits 2',
  'unservable-protos':
    'a tls-protos that leaves no protocol node:tls can speak (SSLv3 alone) is refused (UNHITCH_TLS_POLICY); Hitch starts and fails every handshake ("no protocols available")',
};

/** Corpus cases run through both (sampled with a fixed seed; the whole corpus is 200). */
const CORPUS_SAMPLE = 20;
const CORPUS_SEED = 0x7e57;
const PARALLEL = 4;
// The V8 code cache cuts each unhitch process's start-up (children inherit it).
process.env.NODE_COMPILE_CACHE ??= join(tmpdir(), 'unhitch-test-compile-cache');

/** A config both start with, for one fault at a time. */
const FAULTLESS: Shape = {
  frontends: 'one',
  pem: 'combined',
  ciphers: undefined,
  ciphersuites: undefined,
  ecdhCurve: undefined,
  protos: undefined,
  blockProtos: undefined,
  user: undefined,
  ocspVerify: false,
  pidfile: false,
  logFile: false,
  alpn: 'none',
  ticketKey: false,
  faults: [],
};

/** The faultless config with this one fault (the block fault needs a frontend block). */
function withFault(fault: Fault): Shape {
  return {
    ...FAULTLESS,
    frontends: fault === 'block-tls-after-tls-protos' ? 'block' : 'one',
    faults: [fault],
  };
}

function workDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-differential-'));
  // Hitch's workers run as nobody; the files they open are read before the switch, but
  // the directory must let nobody in for the pidfile and listen file checks.
  chmodSync(dir, 0o755);
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('verdictLine strips a log prefix whatever the pid width (CI ran Hitch as pid 1471: "[ 1471]")', () => {
  for (const pid of ['[ 1471]', '[16799]', '[    7]']) {
    const stderr = `20261205T194835.261940 ${pid} {core} Note: no DH parameters found in /x.pem\nhitch configuration looks ok.\n`;
    assert.equal(meaningOf(verdictLine(stderr)), 'ok', pid);
  }
});

test('--test over the generated corpus (every fault alone, then a sample): the same exit status and the same meaning of the first stderr line as hitch --test; each DELIBERATE fault does differ', {
  skip,
  timeout: 300_000,
}, async (t) => {
  const dir = workDir(t);
  const fx: Fixtures = makeFixtures(dir);
  // Every fault alone first, so each is compared whatever the sample draws, then the
  // sample of the corpus test-equals-start runs (faults in combination, varied configs).
  const shapes = [
    ...FAULTS.map(withFault),
    ...fc.sample(SHAPE, { numRuns: CORPUS_SAMPLE, seed: CORPUS_SEED }),
  ];
  const disagreements: string[] = [];
  // A DELIBERATE entry the two no longer disagree on is a stale line in the docs' list.
  const deliberateAgreed: string[] = [];
  let agreedRefusals = 0;
  let agreedPasses = 0;
  const queue = shapes.map((shape, index) => ({ shape, index }));
  const work = async (): Promise<void> => {
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) {
      const runDir = join(dir, `case-${item.index}`);
      mkdirSync(runDir);
      // --test binds nothing: fixed ports are fine.
      const ports = [42_000 + item.index, 43_000 + item.index];
      const generated = corpusCase(item.shape, fx, ports, runDir, 'hitch');
      const configPath = join(runDir, 'hitch.conf');
      writeFileSync(configPath, generated.text);
      const both = await runBoth(['--test', `--config=${configPath}`, ...generated.args]);
      const faults = item.shape.faults;
      const hitchLine = verdictLine(both.hitch.stderr);
      const unhitchLine = verdictLine(both.unhitch.stderr);
      const observed = {
        hitch: { status: both.hitch.status, meaning: meaningOf(hitchLine) },
        unhitch: { status: both.unhitch.status, meaning: meaningOf(unhitchLine) },
      };
      // With two faults, which one is reported first is the order of the checks; with
      // Hitch silent on stderr (a log-filename took its reason), only the status counts.
      const compareMeaning = faults.length <= 1 && observed.hitch.meaning !== 'silent';
      const same =
        observed.hitch.status === observed.unhitch.status &&
        (!compareMeaning || observed.hitch.meaning === observed.unhitch.meaning);
      const report = `[${faults.join(', ') || 'no fault'}] hitch ${observed.hitch.status} ${JSON.stringify(hitchLine)} / unhitch ${observed.unhitch.status} ${JSON.stringify(unhitchLine)}\n${generated.text}`;
      if (faults.some((fault) => DELIBERATE[fault] !== undefined)) {
        if (faults.length === 1 && same) deliberateAgreed.push(report);
        continue;
      }
      if (!same) disagreements.push(report);
      else if (observed.hitch.status === 0) agreedPasses++;
      else agreedRefusals++;
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, work));
  t.diagnostic(`agreed: ${agreedPasses} pass, ${agreedRefusals} refused`);
  assert.deepEqual(disagreements, [], 'hitch --test and unhitch --test disagree');
  assert.deepEqual(deliberateAgreed, [], 'listed as DELIBERATE but hitch and unhitch agree');
  assert.ok(agreedPasses >= 5 && agreedRefusals >= 5, 'both verdicts exercised');
});

test('--test as root without user: both exit 0 (only a start refuses root workers)', {
  skip: skip || (isRoot ? false : 'needs root'),
}, async (t) => {
  const dir = workDir(t);
  const fx = makeFixtures(dir);
  const configPath = join(dir, 'hitch.conf');
  writeFileSync(
    configPath,
    `frontend = "[127.0.0.1]:4433"\nbackend = "[127.0.0.1]:9"\npem-file = "${fx.combined}"\n`,
  );
  const both = await runBoth(['--test', `--config=${configPath}`]);
  assert.equal(both.hitch.status, 0, both.hitch.stderr);
  assert.equal(both.unhitch.status, 0, both.unhitch.stderr);
  assert.equal(meaningOf(verdictLine(both.hitch.stderr)), 'ok');
  assert.equal(meaningOf(verdictLine(both.unhitch.stderr)), 'ok');
});

test('a missing pem-file: the same status and meaning, and both name the line', {
  skip,
}, async (t) => {
  const dir = workDir(t);
  const configPath = join(dir, 'hitch.conf');
  writeFileSync(
    configPath,
    `frontend = "[127.0.0.1]:4433"\nbackend = "[127.0.0.1]:9"\nuser = "nobody"\npem-file = "${join(dir, 'missing.pem')}"\n`,
  );
  const both = await runBoth(['--test', `--config=${configPath}`]);
  assert.equal(both.hitch.status, both.unhitch.status);
  const lines = {
    hitch: verdictLine(both.hitch.stderr),
    unhitch: verdictLine(both.unhitch.stderr),
  };
  assert.equal(meaningOf(lines.hitch), 'pem-missing', lines.hitch);
  assert.equal(meaningOf(lines.unhitch), 'pem-missing', lines.unhitch);
  assert.match(lines.hitch, /line 4:/);
  // Hitch names the file as '' (its parser passes an empty name); unhitch names it.
  assert.ok(lines.unhitch.includes(`${configPath}:4:`), lines.unhitch);
});

test('a backend Hitch refuses at start (a missing unix socket, a path that is no socket, a name that does not resolve): --test and the start both exit 1 and say so', {
  skip,
}, async (t) => {
  const dir = workDir(t);
  const { site } = pki();
  const cases = {
    'missing unix socket': join(dir, 'missing.sock'),
    'not a socket': dir,
    'unresolvable name': '[no-such-backend.invalid]:80',
  };
  for (const [what, backend] of Object.entries(cases)) {
    for (const mode of [['--test'], []]) {
      const both = await runBoth(
        [...mode, '--frontend=[127.0.0.1]:0', `--backend=${backend}`, '--user=nobody', site],
        { cwd: dir },
      );
      for (const impl of ['hitch', 'unhitch'] as const) {
        const line = verdictLine(both[impl].stderr);
        assert.equal(
          both[impl].status,
          1,
          `${what} ${mode.join('')}: ${impl}: ${both[impl].stderr}`,
        );
        assert.equal(meaningOf(line), 'backend', `${what} ${mode.join('')}: ${impl}: ${line}`);
      }
    }
  }
});

test('a frontend port in use: the start fails with {bind-socket}: Address already in use: [127.0.0.1]:PORT on stderr', {
  skip,
}, async (t) => {
  const dir = workDir(t);
  const fx = makeFixtures(dir);
  const holder = createServer();
  holder.listen(0, '127.0.0.1');
  await once(holder, 'listening');
  t.after(() => holder.close());
  const port = (holder.address() as { port: number }).port;
  const configPath = join(dir, 'hitch.conf');
  writeFileSync(
    configPath,
    `frontend = "[127.0.0.1]:${port}"\nbackend = "[127.0.0.1]:9"\nuser = "nobody"\npem-file = "${fx.combined}"\n`,
  );
  const both = await runBoth((impl) => [
    `--config=${configPath}`,
    ...(impl === 'unhitch' ? ['--workers=1', '--pin-workers=off'] : []),
  ]);
  for (const impl of ['hitch', 'unhitch'] as const) {
    const result = both[impl];
    assert.equal(result.status, 1, `${impl}: ${result.stderr}`);
    assert.ok(
      result.stderr.includes(`{bind-socket}: Address already in use: [127.0.0.1]:${port}`),
      `${impl}: ${result.stderr}`,
    );
  }
});

test('--help, --version, a bad flag, no argument: the same exit status', { skip }, async () => {
  for (const args of [['--help'], ['--version'], ['--bogus'], ['-x'], [], ['--workers=abc']]) {
    const both = await runBoth(args);
    assert.equal(both.unhitch.status, both.hitch.status, `unhitch ${args.join(' ')}`);
  }
});

test("every flag hitch --help lists is a Hitch flag in unhitch's option table, and the other way round", {
  skip,
}, async () => {
  const help = (await runBoth(['--help'])).hitch;
  const listed = new Set(
    (`${help.stdout}${help.stderr}`.match(/--[a-z0-9-]+/g) ?? []).map((flag) => flag.slice(2)),
  );
  // Hitch flags this Debian build of 1.7.2 does not have: compiled out (shared cache) or
  // added in 1.8 (the two timeouts). src/config/options/provenance.ts says which.
  const notInThisBuild = new Set([
    'session-cache',
    'shared-cache-if',
    'shared-cache-listen',
    'shared-cache-peer',
    'backend-connect-timeout',
    'ssl-handshake-timeout',
    // In Hitch's getopt table but not its --help text (hitch --ssl / --tls are accepted).
    'ssl',
    'tls',
    'dbg-listen',
  ]);
  const table = OPTIONS.flatMap((option) => (option.cli ? [option.cli] : []));
  const markedHitch = table.filter((cli) => cli.hitch).map((cli) => cli.long);
  const notMarked = table
    .filter((cli) => !cli.hitch && listed.has(cli.long))
    .map((cli) => cli.long);
  assert.deepEqual(notMarked, [], 'listed by hitch --help but marked unhitch-only');
  assert.deepEqual(
    markedHitch.filter((long) => !listed.has(long) && !notInThisBuild.has(long)),
    [],
    'marked as Hitch flags but not in hitch --help',
  );
});

// --- Serving scenarios --------------------------------------------------------------

interface Pki {
  readonly ca: string;
  readonly site: string;
  readonly clientCert: string;
  readonly clientKey: string;
}

let pkiMade: Pki | undefined;
function pki(): Pki {
  if (pkiMade) return pkiMade;
  const ca = makeCa('differential-ca');
  const site = issue(ca, 'differential-site', { dnsNames: ['site.example'] });
  const client = issue(ca, 'differential-client');
  pkiMade = {
    ca: ca.certPath,
    site: site.combinedPath,
    clientCert: client.certPath,
    clientKey: client.keyPath,
  };
  return pkiMade;
}

/** A backend that keeps each connection's PROXY header (v1 line or whole v2 block). */
class HeaderBackend {
  readonly server: Server;
  private readonly waiting: Array<(header: Buffer) => void> = [];
  private readonly received: Buffer[] = [];

  constructor() {
    this.server = createServer((socket) => this.read(socket));
    this.server.listen(0, '127.0.0.1');
  }

  async port(): Promise<number> {
    if (!this.server.listening) await once(this.server, 'listening');
    return (this.server.address() as { port: number }).port;
  }

  next(): Promise<Buffer> {
    const ready = this.received.shift();
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private read(socket: Socket): void {
    let buffered = Buffer.alloc(0);
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      const length = headerLength(buffered);
      if (length === undefined) return;
      socket.removeAllListeners('data');
      socket.destroy();
      const header = buffered.subarray(0, length);
      const waiter = this.waiting.shift();
      if (waiter) waiter(header);
      else this.received.push(header);
    });
  }
}

function headerLength(bytes: Buffer): number | undefined {
  if (bytes.subarray(0, 6).toString('latin1') === 'PROXY ') {
    const end = bytes.indexOf('\r\n');
    return end < 0 ? undefined : end + 2;
  }
  if (bytes.length < 16) return undefined;
  const length = 16 + bytes.readUInt16BE(14);
  return bytes.length >= length ? length : undefined;
}

/** Ports zeroed (they differ per run): v1's two numbers, v2's IPv4 address block ports. */
function normalise(header: Buffer): string {
  if (header.subarray(0, 6).toString('latin1') === 'PROXY ') {
    return header.toString('latin1').replace(/ \d+ \d+\r\n$/, ' SRCPORT DSTPORT\r\n');
  }
  const copy = Buffer.from(header);
  if (copy[13] === 0x11) copy.fill(0, 24, 28);
  return copy.toString('hex');
}

const TLS13 = {
  minVersion: 'TLSv1.3',
  maxVersion: 'TLSv1.3',
  ciphers: 'TLS_AES_128_GCM_SHA256',
} as const;
const TLS12 = {
  minVersion: 'TLSv1.2',
  maxVersion: 'TLSv1.2',
  ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256',
} as const;

/**
 * One TLS client; resolves with how its handshake ended ('ok' or the alert/error code it
 * got) and, when 'ok', the open socket (the caller closes it).
 */
function openTls(
  port: number,
  options: ConnectionOptions,
  waitForData = false,
): Promise<{ outcome: string; socket: TLSSocket }> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...options });
    const timer = setTimeout(() => finish('timeout'), 10_000);
    function finish(outcome: string, keepOpen = false): void {
      clearTimeout(timer);
      if (!keepOpen) socket.destroy();
      resolve({ outcome, socket });
    }
    socket.on('error', (error: NodeJS.ErrnoException) => finish(error.code ?? error.message));
    socket.on('secureConnect', () => {
      // TLS 1.3: the server judges the client's certificate after the client's Finished,
      // so a refusal arrives as an alert on the first read.
      if (!waitForData) finish('ok', true);
    });
    socket.on('close', () => finish('closed'));
  });
}

async function handshake(
  port: number,
  options: ConnectionOptions,
  waitForData = false,
): Promise<string> {
  const { outcome, socket } = await openTls(port, options, waitForData);
  socket.destroy();
  return outcome;
}

function within<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no ${what} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

interface ServeSetup {
  readonly dir: string;
  readonly config: (impl: Implementation, port: number) => string;
}

let scenarios = 0;

/** Write the config with a fresh port per implementation and serve it. */
async function optionsFor(setup: ServeSetup, impl: Implementation): Promise<ServeOptions> {
  const port = await freePort();
  const stem = join(setup.dir, `${impl}-${++scenarios}`);
  const configPath = `${stem}.conf`;
  writeFileSync(configPath, setup.config(impl, port));
  return {
    configPath,
    dbgListen: `${stem}.listen`,
    pidfile: `${stem}.pid`,
    extraArgs: impl === 'unhitch' ? ['--workers=1', '--pin-workers=off'] : [],
  };
}

async function observe<T>(
  setup: ServeSetup,
  probe: (served: Served) => Promise<T>,
): Promise<Both<T>> {
  const prepared = {
    hitch: await optionsFor(setup, 'hitch'),
    unhitch: await optionsFor(setup, 'unhitch'),
  };
  return observeBoth((impl) => prepared[impl], probe);
}

/** A config serving `pem` on 127.0.0.1:`port` (backend port 9: nothing behind it), plus `extra` lines. */
function servingConfig(port: number, pem: string, ...extra: string[]): string {
  return [
    `frontend = "[127.0.0.1]:${port}"`,
    'backend = "[127.0.0.1]:9"',
    `pem-file = "${pem}"`,
    'user = "nobody"',
    ...extra,
    '',
  ].join('\n');
}

function portOf(served: Served, index = 0): number {
  return Number(served.listenLines[index]?.split(':').at(-1));
}

test('dbg-listen: the same file, byte for byte (AF_INET listeners only, in frontend order)', {
  skip,
}, async (t) => {
  const dir = workDir(t);
  const { site } = pki();
  const ports = { hitch: [0, 0, 0], unhitch: [0, 0, 0] };
  for (const impl of ['hitch', 'unhitch'] as const)
    ports[impl] = [await freePort('::1'), await freePort(), await freePort()];
  const observed = await observeBoth(
    (impl) => {
      const [v6, v4, wildcard] = ports[impl];
      const configPath = join(dir, `${impl}.conf`);
      writeFileSync(
        configPath,
        [
          `frontend = "[::1]:${v6}"`,
          `frontend = "[127.0.0.1]:${v4}"`,
          `frontend = "[*]:${wildcard}"`,
          'frontend = "[127.0.0.1]:0"',
          'backend = "[127.0.0.1]:9"',
          `pem-file = "${site}"`,
          'user = "nobody"',
          '',
        ].join('\n'),
      );
      return {
        configPath,
        dbgListen: join(dir, `${impl}.listen`),
        pidfile: join(dir, `${impl}.pid`),
        extraArgs: impl === 'unhitch' ? ['--workers=1', '--pin-workers=off'] : [],
      };
    },
    async (served) =>
      // The same text with each implementation's own ports put back to placeholders.
      served.listenFileText
        .replaceAll(`:${ports[served.impl][1]}\n`, ':V4\n')
        .replaceAll(`:${ports[served.impl][2]}\n`, ':WILDCARD\n'),
  );
  // DELIBERATE: for a kernel-chosen port Hitch 1.7 writes the configured `:0`; unhitch
  // the port bound, the one a script can connect to.
  const kernelChosen = /^127\.0\.0\.1:(\d+)$/m;
  assert.notEqual(kernelChosen.exec(observed.unhitch.split('\n')[2] ?? '')?.[1], '0');
  const unhitchAsHitch = observed.unhitch.replace(/^(127\.0\.0\.1):\d+\n$/m, '$1:0\n');
  assert.equal(unhitchAsHitch, observed.hitch);
  assert.equal(observed.hitch, '127.0.0.1:V4\n0.0.0.0:WILDCARD\n127.0.0.1:0\n');
});

/** A name in /etc/hosts with an IPv4 and an IPv6 loopback address, for as long as a test runs. */
function dualStackName(t: { after: (fn: () => void) => void }): string | undefined {
  const name = 'unhitch-dual-stack.test';
  let original: string;
  try {
    original = readFileSync('/etc/hosts', 'utf8');
    writeFileSync('/etc/hosts', `${original}\n127.0.0.1 ${name}\n::1 ${name}\n`);
  } catch {
    return undefined;
  }
  t.after(() => writeFileSync('/etc/hosts', original));
  return name;
}

test('a frontend host name with an IPv4 and an IPv6 address: both serve on every address (Hitch binds each getaddrinfo result)', {
  skip: skip || (isRoot ? false : '/etc/hosts is written: needs root'),
}, async (t) => {
  const dir = workDir(t);
  const { site } = pki();
  const name = dualStackName(t);
  assert.ok(name, '/etc/hosts is writable as root');
  const ports: Partial<Record<Implementation, number>> = {};
  for (const impl of ['hitch', 'unhitch'] as const) ports[impl] = await freePort('::1');
  const observed = await observeBoth(
    (impl) => {
      const configPath = join(dir, `${impl}-dual.conf`);
      writeFileSync(
        configPath,
        `frontend = "[${name}]:${ports[impl]}"\nbackend = "[127.0.0.1]:9"\npem-file = "${site}"\nuser = "nobody"\n`,
      );
      return {
        configPath,
        dbgListen: join(dir, `${impl}-dual.listen`),
        pidfile: join(dir, `${impl}-dual.pid`),
        extraArgs: impl === 'unhitch' ? ['--workers=1', '--pin-workers=off'] : [],
      };
    },
    async (served) => {
      const outcomes: string[] = [];
      for (const host of ['127.0.0.1', '::1'])
        outcomes.push(`${host} ${await handshake(ports[served.impl] ?? 0, { ...TLS13, host })}`);
      return outcomes;
    },
  );
  assert.deepEqual(observed.unhitch, observed.hitch);
  // Not vacuous where the resolver returns both (AI_ADDRCONFIG keeps ::1 only on a host
  // with a non-loopback IPv6 address): Hitch then serves both.
  t.diagnostic(`hitch: ${observed.hitch.join(', ')}`);
  assert.equal(observed.hitch[0], '127.0.0.1 ok');
});

test('PROXY v1 and v2 bytes, addresses and ports normalised: with and without a client certificate, ALPN, authority, proxy-tlv', {
  skip,
  timeout: 120_000,
}, async (t) => {
  const dir = workDir(t);
  const material = pki();
  const backends = { hitch: new HeaderBackend(), unhitch: new HeaderBackend() };
  t.after(() => {
    backends.hitch.server.close();
    backends.unhitch.server.close();
  });
  const backendPorts = {
    hitch: await backends.hitch.port(),
    unhitch: await backends.unhitch.port(),
  };
  const base = (impl: Implementation, port: number): string[] => [
    `frontend = "[127.0.0.1]:${port}"`,
    `backend = "[127.0.0.1]:${backendPorts[impl]}"`,
    `pem-file = "${material.site}"`,
    'user = "nobody"',
  ];
  // The client stays connected until the backend has the header: Hitch connects to the
  // backend only after the handshake, and drops a client gone by then.
  const header = async (served: Served, options: ConnectionOptions): Promise<string> => {
    const received = backends[served.impl].next();
    const { outcome, socket } = await openTls(portOf(served), options);
    try {
      assert.equal(outcome, 'ok', `${served.impl} handshake; its output:\n${served.output()}`);
      return normalise(await within(received, 10_000, `PROXY header from ${served.impl}`));
    } finally {
      socket.destroy();
    }
  };
  const withEverything = {
    ...TLS13,
    servername: 'site.example',
    ALPNProtocols: ['h2'],
    cert: readPem(material.clientCert),
    key: readPem(material.clientKey),
  };

  const v1 = await observe(
    { dir, config: (impl, port) => [...base(impl, port), 'write-proxy-v1 = on', ''].join('\n') },
    (served) => header(served, TLS13),
  );
  assert.equal(v1.unhitch, v1.hitch, 'PROXY v1');

  const v2 = await observe(
    {
      dir,
      config: (impl, port) =>
        [
          ...base(impl, port),
          'write-proxy-v2 = on',
          'alpn-protos = "h2,http/1.1"',
          'proxy-tlv = on',
          'proxy-authority = on',
          'proxy-client-cert = on',
          'client-verify = optional',
          `client-verify-ca = "${material.ca}"`,
          '',
        ].join('\n'),
    },
    async (served) => ({
      bare: await header(served, TLS13),
      everything: await header(served, withEverything),
      tls12: await header(served, { ...TLS12, servername: 'site.example' }),
    }),
  );
  assert.equal(v2.unhitch.bare, v2.hitch.bare, 'v2, no SNI, no ALPN, no client certificate');
  assert.equal(
    v2.unhitch.everything,
    v2.hitch.everything,
    'v2 with ALPN, authority, SSL TLV and the client certificate (TLV 0xE0)',
  );
  assert.equal(v2.unhitch.tls12, v2.hitch.tls12, 'v2 under TLS 1.2');
  assert.ok(
    Buffer.from(v2.hitch.everything, 'hex').includes('-----BEGIN TRUSTED CERTIFICATE-----'),
    "Hitch's TLV 0xE0 is PEM_write_bio_X509_AUX's",
  );

  const v2Off = await observe(
    {
      dir,
      config: (impl, port) =>
        [
          ...base(impl, port),
          'write-proxy-v2 = on',
          'alpn-protos = "h2,http/1.1"',
          'proxy-tlv = off',
          'proxy-authority = off',
          '',
        ].join('\n'),
    },
    (served) => header(served, { ...TLS13, servername: 'site.example', ALPNProtocols: ['h2'] }),
  );
  assert.equal(v2Off.unhitch, v2Off.hitch, 'v2 with proxy-tlv and proxy-authority off');
});

test('the TLS alert a client receives: sni-nomatch-abort, and a missing required client certificate, under TLS 1.2 and 1.3', {
  skip,
  timeout: 120_000,
}, async (t) => {
  const dir = workDir(t);
  const material = pki();
  const cert = { cert: readPem(material.clientCert), key: readPem(material.clientKey) };
  const observed = await observe(
    {
      dir,
      config: (_impl, port) =>
        servingConfig(
          port,
          material.site,
          'sni-nomatch-abort = on',
          'client-verify = required',
          `client-verify-ca = "${material.ca}"`,
        ),
    },
    async (served) => {
      const port = portOf(served);
      return {
        nomatch12: await handshake(port, { ...TLS12, servername: 'other.example', ...cert }),
        nomatch13: await handshake(port, { ...TLS13, servername: 'other.example', ...cert }),
        noCert12: await handshake(port, { ...TLS12, servername: 'site.example' }),
        noCert13: await handshake(port, { ...TLS13, servername: 'site.example' }, true),
      };
    },
  );
  assert.deepEqual(observed.unhitch, observed.hitch);
});

test('a client certificate from another CA: Hitch sends an alert, node can only close (named difference)', {
  skip,
  timeout: 120_000,
}, async (t) => {
  const dir = workDir(t);
  const material = pki();
  const stranger = issue(makeCa('differential-other-ca'), 'differential-stranger');
  const cert = { cert: readPem(stranger.certPath), key: readPem(stranger.keyPath) };
  const observed = await observe(
    {
      dir,
      config: (_impl, port) =>
        servingConfig(
          port,
          material.site,
          'client-verify = required',
          `client-verify-ca = "${material.ca}"`,
        ),
    },
    async (served) => ({
      tls12: await handshake(
        portOf(served),
        { ...TLS12, servername: 'site.example', ...cert },
        true,
      ),
      tls13: await handshake(
        portOf(served),
        { ...TLS13, servername: 'site.example', ...cert },
        true,
      ),
    }),
  );
  t.diagnostic(
    `hitch ${JSON.stringify(observed.hitch)}, unhitch ${JSON.stringify(observed.unhitch)}`,
  );
  // Both refuse the client. IMPOSSIBLE in node: its verify callback always accepts (the
  // chain is judged after OpenSSL's handshake), so unhitch cannot send Hitch's
  // unknown_ca alert; it closes instead (before the server Finished in TLS 1.2, before
  // any data or ticket in TLS 1.3).
  for (const outcome of [...Object.values(observed.hitch), ...Object.values(observed.unhitch)])
    assert.notEqual(outcome, 'timeout');
  assert.match(observed.hitch.tls12, /ALERT/);
  // Listed in operations.md as impossible: this fails once node can send the alert.
  assert.doesNotMatch(observed.unhitch.tls12, /ALERT/);
  assert.notEqual(observed.unhitch.tls12, 'ok');
  assert.notEqual(observed.unhitch.tls13, 'ok');
});

test("defaults that deliberately differ: prefer-server-ciphers (Hitch off, unhitch on) and the key-exchange groups (Hitch: OpenSSL's defaults, X448 among them)", {
  skip,
  timeout: 120_000,
}, async (t) => {
  const dir = workDir(t);
  const { site } = pki();
  const observed = await observe(
    {
      dir,
      config: (_impl, port) => servingConfig(port, site),
    },
    async (served) => {
      const port = portOf(served);
      // Both default cipher lists put AES-256-GCM before AES-128-GCM; this client asks
      // for AES-128 first, so the choice says whose order counts.
      const { outcome, socket } = await openTls(port, {
        ...TLS12,
        ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384',
      });
      const cipher12 = outcome === 'ok' ? socket.getCipher().name : outcome;
      socket.destroy();
      return {
        cipher12,
        p256Only12: await handshake(port, { ...TLS12, ecdhCurve: 'P-256' }),
        x448Only13: await handshake(port, { ...TLS13, ecdhCurve: 'X448' }),
        x25519Only13: await handshake(port, { ...TLS13, ecdhCurve: 'X25519' }),
      };
    },
  );
  t.diagnostic(
    `hitch ${JSON.stringify(observed.hitch)}, unhitch ${JSON.stringify(observed.unhitch)}`,
  );
  // DELIBERATE (operations.md, Differences from Hitch): Hitch's prefer-server-ciphers
  // defaults to off, so the client's first choice wins; unhitch's to on.
  assert.equal(observed.hitch.cipher12, 'ECDHE-ECDSA-AES128-GCM-SHA256');
  assert.equal(observed.unhitch.cipher12, 'ECDHE-ECDSA-AES256-GCM-SHA384');
  // DELIBERATE: with ecdh-curve unset Hitch leaves the groups to OpenSSL's defaults
  // (OpenSSL 3.0: X25519, P-256, X448, P-521, P-384, FFDHE); unhitch offers
  // X25519MLKEM768:X25519:P-256:P-384. (A TLS 1.2 probe would also be bound by the
  // certificate's curve, P-256: its groups name the curves it accepts for the certificate.)
  assert.equal(observed.hitch.x448Only13, 'ok');
  assert.notEqual(observed.unhitch.x448Only13, 'ok');
  for (const impl of ['hitch', 'unhitch'] as const) {
    assert.equal(observed[impl].p256Only12, 'ok', impl);
    assert.equal(observed[impl].x25519Only13, 'ok', impl);
  }
});

test("client mode (--client): Hitch's --test passes, unhitch refuses it (not implemented)", {
  skip,
}, async (t) => {
  const dir = workDir(t);
  const { site } = pki();
  const both = await runBoth(
    [
      '--test',
      '--client',
      '--frontend=[127.0.0.1]:4433',
      '--backend=[127.0.0.1]:9',
      '--user=nobody',
      site,
    ],
    { cwd: dir },
  );
  assert.equal(both.hitch.status, 0, both.hitch.stderr);
  // DELIBERATE: refused rather than run as a TLS server where a TLS client was asked for.
  assert.equal(both.unhitch.status, 1, both.unhitch.stderr);
  assert.match(both.unhitch.stderr, /client mode .* is not implemented/);
});

test('SIGHUP with a broken config: both keep serving the old one', { skip }, async (t) => {
  const dir = workDir(t);
  const { site } = pki();
  // A backend that accepts: with a refused one, Hitch may close the client before the
  // handshake's end, and "serves" would measure that race instead of the reload.
  const backend = createServer((socket) => socket.on('error', () => undefined));
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  t.after(() => backend.close());
  const backendPort = (backend.address() as { port: number }).port;
  // Shown should the two differ.
  const outputs: Partial<Record<Implementation, string>> = {};
  const observed = await observe(
    {
      dir,
      config: (_impl, port) =>
        [
          `frontend = "[127.0.0.1]:${port}"`,
          `backend = "[127.0.0.1]:${backendPort}"`,
          `pem-file = "${site}"`,
          'user = "nobody"',
          '',
        ].join('\n'),
    },
    async (served) => {
      const before = served.output().length;
      writeFileSync(served.configPath, 'frontend = {\nthis is not hitch.conf\n');
      // Each logs the failed reload (Hitch: "Config reload failed: …"; unhitch: "reload
      // rejected; the running configuration stays"). Hitch may still be setting up its
      // signal handling when it looks ready and ignore a first SIGHUP: a failed reload
      // changes nothing, so the signal is repeated, a bounded number of times.
      let said = false;
      for (let attempt = 0; attempt < 10 && !said; attempt++) {
        served.child.kill('SIGHUP');
        said = await served.waitForOutput(/reload (failed|rejected)/i, before, 2_000).then(
          () => true,
          () => false,
        );
      }
      assert.ok(said, `${served.impl} logged no failed reload:\n${served.output()}`);
      const result = {
        running: served.child.exitCode === null,
        serves: await handshake(portOf(served), TLS13),
      };
      outputs[served.impl] = served.output();
      return result;
    },
  );
  assert.deepEqual(
    observed.unhitch,
    observed.hitch,
    `hitch's output:\n${outputs.hitch}\nunhitch's output:\n${outputs.unhitch}`,
  );
  assert.deepEqual(observed.hitch, { running: true, serves: 'ok' });
});

function readPem(path: string): string {
  return readFileSync(path, 'latin1');
}
