/**
 * `unhitch --test` ≡ a real start: over a generated corpus of hitch.conf files, good and
 * bad in the ways operators get them wrong (certificates, keys, ciphers, curves,
 * protocol lists in conflicting orders, duplicate addresses, users, pidfile and log
 * paths, ticket key files, syntax), `--test` exits 0 exactly when the same file started
 * for real gets every worker listening on free loopback ports.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { makeSelfSigned } from '../../src/tls/selfsigned.js';
import { freePort } from '../kit/ports.js';
import { CLI } from '../kit/unhitch-process.js';

const CORPUS_SIZE = 200;
const PARALLEL = 6;
const SEED = 0x7e57;
/** A start that neither listens nor exits within this has no verdict and is run again. */
const START_TIMEOUT_MS = 60_000;

interface Fixtures {
  readonly dir: string;
  readonly combined: string;
  readonly cert: string;
  readonly key: string;
  readonly otherKey: string;
  readonly junk: string;
  readonly badTicketKey: string;
}

function makeFixtures(dir: string): Fixtures {
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
interface Shape {
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
  readonly alpn: 'none' | 'one' | 'two-with-v2';
  readonly ticketKey: boolean;
  readonly faults: readonly Fault[];
}

const FAULTS = [
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
  'two-alpn-without-proxy-v2',
  'bad-ticket-key',
  'syntax-error',
  'unknown-option',
] as const;
type Fault = (typeof FAULTS)[number];

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

const SHAPE: fc.Arbitrary<Shape> = fc.record({
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
  alpn: fc.constantFrom('none', 'one', 'two-with-v2'),
  ticketKey: fc.boolean(),
  faults: fc.oneof(
    fc.constant([] as Fault[]),
    fc.subarray([...FAULTS], { minLength: 1, maxLength: 2 }),
  ),
});

function configText(shape: Shape, fx: Fixtures, ports: readonly number[], runDir: string): string {
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
  lines.push('backend = "[127.0.0.1]:9"', 'workers = 1', 'pin-workers = off');
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
  if (has('pidfile-dir-missing')) lines.push(`pidfile = "${join(runDir, 'no/dir/u.pid')}"`);
  else if (shape.pidfile) lines.push(`pidfile = "${join(runDir, 'u.pid')}"`);
  // A missing directory is created (mkdir -p); one that is a regular file cannot be.
  if (has('log-dir-missing')) lines.push(`log-filename = "${join(runDir, 'new/dir/u.log')}"`);
  else if (has('log-under-a-file')) lines.push(`log-filename = "${fx.junk}/u.log"`);
  else if (shape.logFile) lines.push(`log-filename = "${join(runDir, 'u.log')}"`);
  if (has('two-alpn-without-proxy-v2')) lines.push('alpn-protos = "h2,http/1.1"');
  else if (shape.alpn === 'one') lines.push('alpn-protos = "http/1.1"');
  else if (shape.alpn === 'two-with-v2')
    lines.push('alpn-protos = "h2,http/1.1"', 'write-proxy-v2 = on');
  if (has('bad-ticket-key')) lines.push(`ticket-key-file = "${fx.badTicketKey}"`);
  else if (shape.ticketKey) lines.push(`ticket-key-file = "${join(runDir, 'tickets.key')}"`);
  if (has('syntax-error')) lines.push('workers 2');
  if (has('unknown-option')) lines.push('frobnicate = on');
  return `${lines.join('\n')}\n`;
}

interface Outcome {
  readonly ok: boolean;
  readonly output: string;
  /** Neither listened nor exited in time: no verdict (a loaded machine), not a failure. */
  readonly timedOut?: boolean;
}

// The V8 code cache cuts each process's start-up: 400+ processes run here.
const CHILD_ENV = {
  ...process.env,
  NODE_COMPILE_CACHE: join(tmpdir(), 'unhitch-test-compile-cache'),
};

function runTest(configPath: string): Promise<Outcome> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, '--test', `--config=${configPath}`], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: CHILD_ENV,
    });
    let output = '';
    child.stderr.on('data', (chunk: Buffer) => {
      output += chunk.toString('utf8');
    });
    // A spawn that fails (e.g. its directory is gone) emits 'error' and may never 'close'.
    child.on('error', (err) => resolve({ ok: false, output: `${output}${err.message}` }));
    child.on('close', (status) => resolve({ ok: status === 0, output }));
  });
}

/**
 * Start for real; success is the "listening" report (on stdout, or in the log file when
 * the config names one), then a clean SIGTERM stop.
 */
function runStart(configPath: string, cwd: string, logFile: string | undefined): Promise<Outcome> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, `--config=${configPath}`], {
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: CHILD_ENV,
    });
    let output = '';
    let listened = false;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = !listened;
      child.kill('SIGKILL');
    }, START_TIMEOUT_MS);
    const onData = (chunk: Buffer): void => {
      output += chunk.toString('utf8');
      if (!listened && output.includes('"msg":"listening"')) {
        listened = true;
        child.kill('SIGTERM');
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const logWatch =
      logFile === undefined
        ? undefined
        : setInterval(() => {
            if (listened || !existsSync(logFile)) return;
            const text = readFileSync(logFile, 'utf8');
            if (text.includes('"msg":"listening"')) {
              output += text;
              listened = true;
              child.kill('SIGTERM');
            }
          }, 25);
    const settle = (): void => {
      clearTimeout(timer);
      clearInterval(logWatch);
      if (logFile !== undefined && existsSync(logFile)) output += readFileSync(logFile, 'utf8');
      resolve({ ok: listened, output, timedOut });
    };
    child.on('error', (err) => {
      output += err.message;
      settle();
    });
    child.on('close', settle);
  });
}

// 400 runs of the binary: about 100 s of CPU, so a loaded machine needs more than the
// suite's 120 s default.
test('--test exits 0 iff a real start of the same hitch.conf gets its workers listening', {
  timeout: 600_000,
}, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-equiv-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const fx = makeFixtures(dir);
  const shapes = fc.sample(SHAPE, { numRuns: CORPUS_SIZE, seed: SEED });
  const results: Array<{ test: Outcome; start: Outcome; config: string }> = [];
  const queue = shapes.map((shape, index) => ({ shape, index }));
  const work = async (): Promise<void> => {
    // Once the test has ended (a timeout too), start nothing more: its directory is gone
    // and a run left going would keep this file's process alive.
    for (let item = queue.shift(); item !== undefined && !t.signal.aborted; item = queue.shift()) {
      // A port taken by someone else between freePort() and the bind, or a start with no
      // verdict in time on a loaded machine, is not a disagreement: try again.
      for (let attempt = 0; ; attempt++) {
        const runDir = join(dir, `run-${item.index}-${attempt}`);
        mkdirSync(runDir);
        const ports = [await freePort(), await freePort()];
        const config = configText(item.shape, fx, ports, runDir);
        const configPath = join(runDir, 'hitch.conf');
        writeFileSync(configPath, config);
        const checked = await runTest(configPath);
        const logFile = /^log-filename = "(.*)"$/m.exec(config)?.[1];
        const started = await runStart(configPath, runDir, logFile);
        const noVerdict = started.timedOut === true || /EADDRINUSE/.test(started.output);
        if (t.signal.aborted) return;
        if (!started.ok && noVerdict && attempt < 3) continue;
        results.push({ test: checked, start: started, config });
        break;
      }
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, work));

  const disagreements = results.filter((result) => result.test.ok !== result.start.ok);
  const good = results.filter((result) => result.start.ok).length;
  t.diagnostic(
    `${results.length} configs: ${good} started, ${results.length - good} refused; ${disagreements.length} disagreements`,
  );
  for (const result of disagreements.slice(0, 3)) {
    t.diagnostic(
      `--test ${result.test.ok ? 'passed' : 'failed'}, start ${result.start.ok ? 'listened' : 'failed'}:\n${result.config}\n--test said:\n${result.test.output}\nstart said:\n${result.start.output.slice(-2000)}`,
    );
  }
  assert.equal(results.length, CORPUS_SIZE);
  assert.deepEqual(
    disagreements.map((result) => result.config),
    [],
    'configs where --test and the start disagree',
  );
  // Both sides of the equivalence are exercised, not just one.
  assert.ok(good >= 40, `at least 40 configs start (${good})`);
  assert.ok(
    results.length - good >= 40,
    `at least 40 configs are refused (${results.length - good})`,
  );
});
