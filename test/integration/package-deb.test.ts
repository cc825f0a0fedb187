/**
 * The Debian package as an operator meets it: `npm run package:deb` builds it, `apt-get
 * install ./….deb` installs it, and with the system's PATH only (the distribution's old
 * node first, if any) `unhitch --version` and `unhitch --test` on the shipped config work,
 * the installed unit verifies, and the unit's own ExecStart line starts a daemon that
 * carries a wss:// round trip to a WebSocket backend (and its ExecReload line reloads); a
 * newer build installed over it keeps the edited conffile; then `apt-get purge` leaves
 * nothing behind. Installs on this machine and always purges.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import { eventually } from '../kit/eventually.js';
import { freePort } from '../kit/ports.js';

const ROOT = resolve(import.meta.dirname, '../../..');
const UNIT = '/lib/systemd/system/unhitch.service';
const CONFIG = '/etc/unhitch/unhitch.conf';
const SNAKEOIL = '/etc/unhitch/unhitch-snakeoil.pem';
/** What an operator's shell or systemd has: no provisioned node in front. */
const SYSTEM_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' };

function run(command: string, args: readonly string[], env: NodeJS.ProcessEnv = SYSTEM_ENV) {
  return spawnSync(command, args, { encoding: 'utf8', timeout: 300_000, env, cwd: ROOT });
}

function installedState(): string {
  return run('dpkg-query', ['-W', `-f=\${db:Status-Abbrev}`, 'unhitch']).stdout.trim();
}

function skipReason(): string | false {
  if (process.getuid?.() !== 0) return 'needs root: installs and purges a package';
  if (run('sh', ['-c', 'command -v dpkg-deb && command -v apt-get']).status !== 0)
    return 'no dpkg-deb or apt-get: not a Debian system';
  const major = Number(process.versions.node.split('.')[0]);
  // The package carries the Node 24 of .ci/provision-node whatever runs the suite: the
  // Node 24 run covers it, and another line would only build and test the same package.
  if (major !== 24) return `the package carries Node 24; this is the Node ${major} run`;
  if (!existsSync(join(ROOT, 'docs/man/unhitch.8')))
    return 'docs/man not generated yet (`npm run docs:reference`): the build needs the man pages';
  const state = installedState();
  if (state !== '' && !state.startsWith('un') && !state.startsWith('pn'))
    return `unhitch is already installed here (${state}); the test would purge it`;
  return false;
}

const skip = skipReason();
let debPath: string | undefined;
let listed: string[] = [];

after(() => {
  if (skip) return;
  // Whatever happened above, the machine keeps no unhitch.
  run('apt-get', ['purge', '-y', '-q', 'unhitch'], {
    ...SYSTEM_ENV,
    DEBIAN_FRONTEND: 'noninteractive',
  });
  assert.equal(run('dpkg', ['-s', 'unhitch']).status, 1, 'unhitch is still installed');
});

/** `Key=` values of the installed unit, split into words (no quoting in our unit). */
function unitCommand(key: string): string[] {
  const line = readFileSync(UNIT, 'utf8')
    .split('\n')
    .find((candidate) => candidate.startsWith(`${key}=`));
  assert.ok(line, `${key} in ${UNIT}`);
  return line.slice(key.length + 1).split(/\s+/);
}

/** Running: a zombie the daemon's reaper has not collected yet counts as gone. */
function isAlive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

const PACKAGE_VERSION = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'))
  .version as string;

/**
 * `npm run package:deb`, checked to print unhitch_<version>_<arch>.deb last; `version`
 * other than package.json's goes through UNHITCH_DEB_VERSION. Returns the path.
 */
function buildDeb(version: string): string {
  const arch = run('dpkg', ['--print-architecture']).stdout.trim();
  // dist/ is what this test runs from, just built: the script skips its own tsc run.
  const env: NodeJS.ProcessEnv = { ...process.env, UNHITCH_DEB_BUILT: '1' };
  if (version !== PACKAGE_VERSION) env.UNHITCH_DEB_VERSION = version;
  else delete env.UNHITCH_DEB_VERSION;
  const built = run('bash', ['packaging/build-deb.sh'], env);
  assert.equal(built.status, 0, built.stderr);
  const last = built.stdout.trim().split('\n').at(-1) ?? '';
  assert.ok(last.endsWith(`/unhitch_${version}_${arch}.deb`), last);
  assert.ok(existsSync(last));
  return last;
}

test('npm run package:deb builds unhitch_<version>_<arch>.deb and prints its path last', {
  skip,
  timeout: 300_000,
}, () => {
  const last = buildDeb(PACKAGE_VERSION);
  debPath = last;
  const contents = run('dpkg-deb', ['-c', last]).stdout;
  const paths = [...contents.matchAll(/ \.\/(\S*)\n/g)].map((match) => match[1] ?? '');
  // The app is what runs: the compiled code, its dependencies, and package.json (the
  // version, "type": "module"). Not npm's launcher (packaging/npm: /usr/sbin/unhitch is
  // the package's) nor the demo's hitch-compat.conf.
  assert.deepEqual(paths.filter((path) => /^usr\/lib\/unhitch\/app\/[^/]+\/?$/.test(path)).sort(), [
    'usr/lib/unhitch/app/dist/',
    'usr/lib/unhitch/app/node_modules/',
    'usr/lib/unhitch/app/package.json',
  ]);
  assert.deepEqual(
    paths.filter((path) => /^usr\/lib\/unhitch\/app\/dist\/[^/]+\/?$/.test(path)),
    ['usr/lib/unhitch/app/dist/src/'],
  );
  // No source map (node runs without --enable-source-maps, and ours named src/*.ts, not
  // shipped) and no TypeScript, ours or the dependencies'.
  assert.deepEqual(
    paths.filter((path) => /\.(map|ts|mts|cts)$/.test(path)),
    [],
    'source maps or TypeScript in the package',
  );
  assert.ok(paths.includes('usr/lib/unhitch/app/dist/src/bin.js'), 'the code is there');
  assert.match(contents, / \.\/usr\/lib\/unhitch\/node\/bin\/node\n/);
  assert.doesNotMatch(
    contents,
    /node_modules\/(typescript|@biomejs|ws|webtorrent)\//,
    'no devDependency',
  );
  assert.doesNotMatch(contents, /dist\/(test|bench)\/|dist\/src\/demo\//, 'compiled code only');
  for (const path of [
    './usr/sbin/unhitch',
    './lib/systemd/system/unhitch.service',
    './etc/unhitch/unhitch.conf',
    './usr/share/man/man8/unhitch.8.gz',
    './usr/share/man/man5/unhitch.conf.5.gz',
  ])
    assert.ok(contents.includes(` ${path}\n`), `${path} in the package`);
  // Production dependencies only: every package under node_modules is one the lockfile
  // does not mark as a devDependency's.
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { dev?: boolean }>;
  };
  const shipped = [
    ...contents.matchAll(
      / \.\/usr\/lib\/unhitch\/app\/((?:node_modules\/(?:@[^/\n]+\/)?[^/\n]+\/)+)package\.json\n/g,
    ),
  ].map((match) => (match[1] ?? '').slice(0, -1));
  assert.ok(shipped.includes('node_modules/pino'), 'the production dependencies are there');
  assert.deepEqual(
    shipped.filter((path) => lock.packages[path]?.dev === true),
    [],
    'devDependencies in the package',
  );
  assert.deepEqual(
    shipped.filter((path) => lock.packages[path] === undefined),
    [],
    'packages the lockfile does not name',
  );
  const conffiles = run('dpkg-deb', ['--info', last, 'conffiles']);
  assert.equal(conffiles.stdout, `${CONFIG}\n`, 'the config is a conffile');
});

test('lintian: no error and no warning beyond packaging/lintian-overrides', {
  skip: skip || (run('sh', ['-c', 'command -v lintian']).status !== 0 && 'no lintian'),
  timeout: 300_000,
}, () => {
  assert.ok(debPath, 'the package was built');
  // Every kept tag is listed, with its reason, in packaging/README.md and the overrides.
  const result = run('lintian', ['--fail-on', 'error,warning', debPath]);
  assert.doesNotMatch(result.stdout, /^[EW]: /m, result.stdout);
  assert.equal(result.status, 0, result.stdout + result.stderr);
});

test('apt-get install: the launcher, the shipped config and the unit work with the system PATH', {
  skip,
  timeout: 120_000,
}, () => {
  assert.ok(debPath, 'the package was built');
  const installed = run('apt-get', ['install', '-y', '-q', debPath], {
    ...SYSTEM_ENV,
    DEBIAN_FRONTEND: 'noninteractive',
  });
  assert.equal(installed.status, 0, installed.stderr);
  listed = run('dpkg', ['-L', 'unhitch']).stdout.trim().split('\n');

  const version = run('unhitch', ['--version']);
  assert.equal(version.status, 0, version.stderr);
  assert.match(version.stdout, /^unhitch \d+\.\d+\.\d+ \(hitch-compatible/);
  const checked = run('unhitch', ['--test', `--config=${CONFIG}`]);
  assert.equal(checked.status, 0, checked.stderr);
  assert.match(checked.stderr, /unhitch configuration looks ok/);
  // Nothing to fix in what the package made: no warning (the snakeoil key was 0640 and
  // every --test and every start warned "chmod 600 it").
  assert.doesNotMatch(checked.stderr, /warning/, checked.stderr);

  assert.ok(run('getent', ['group', '_unhitch']).status === 0, 'the _unhitch group exists');
  assert.ok(run('getent', ['passwd', '_unhitch']).status === 0, 'the _unhitch user exists');
  // The certificate made at installation: root's alone, as unhitch reads keys before its
  // workers become _unhitch.
  const pem = statSync(SNAKEOIL);
  assert.equal(pem.mode & 0o777, 0o600);
  assert.equal(pem.uid, 0);
  assert.equal(pem.gid, 0);

  if (run('sh', ['-c', 'command -v systemd-analyze']).status === 0) {
    const verified = run('systemd-analyze', ['verify', UNIT], {
      ...SYSTEM_ENV,
      SYSTEMD_LOG_COLOR: '0',
    });
    assert.equal(verified.stderr, '');
    assert.equal(verified.status, 0);
  }
});

test("the unit's ExecStart serves wss:// through to a WebSocket backend; its ExecReload reloads", {
  skip,
  timeout: 120_000,
}, async (t) => {
  assert.ok(listed.length > 0, 'the package is installed');
  const backend = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(backend, 'listening');
  t.after(() => backend.close());
  backend.on('connection', (socket) => socket.on('message', (data) => socket.send(`echo ${data}`)));
  const backendPort = (backend.address() as AddressInfo).port;
  const port = await freePort();
  // What an operator does: edit the conffile (the frontend and the backend).
  const shipped = readFileSync(CONFIG, 'utf8');
  const edited = shipped
    .replace(/^frontend = .*$/m, `frontend = "[127.0.0.1]:${port}"`)
    .replace(/^backend = .*$/m, `backend = "[127.0.0.1]:${backendPort}"`);
  assert.notEqual(edited, shipped);
  writeFileSync(CONFIG, edited);
  // systemd makes RuntimeDirectory= before ExecStart; here the test does.
  mkdirSync('/run/unhitch', { recursive: true });

  const [command = '', ...args] = unitCommand('ExecStart');
  const started = run(command, args);
  assert.equal(started.status, 0, started.stderr);
  const [pidfile] = unitCommand('PIDFile');
  const pid = Number(readFileSync(pidfile ?? '', 'utf8').trim());
  assert.ok(isAlive(pid), 'the daemon runs');
  t.after(() => {
    if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  });

  const client = new WebSocket(`wss://127.0.0.1:${port}/`, { rejectUnauthorized: false });
  await once(client, 'open');
  client.send('hello');
  const [reply] = (await once(client, 'message')) as [Buffer];
  assert.equal(reply.toString(), 'echo hello');
  client.close();
  await once(client, 'close');

  const [reloadCommand = '', ...reloadArgs] = unitCommand('ExecReload');
  const reloaded = run(reloadCommand, reloadArgs);
  assert.equal(reloaded.status, 0, reloaded.stderr);
  assert.match(reloaded.stdout, /reloaded \(generation 2\)/);

  process.kill(pid, 'SIGTERM');
  await eventually(() => (isAlive(pid) ? undefined : true), 60_000, 'the daemon to stop');
  assert.equal(existsSync(pidfile ?? ''), false, 'the pidfile goes with it');
});

test('an upgrade keeps the edited config, the certificate and _unhitch; no systemd, no restart', {
  skip,
  timeout: 300_000,
}, async (t) => {
  assert.ok(listed.length > 0, 'the package is installed');
  const newer = `${PACKAGE_VERSION}+upgrade.test`;
  const newDeb = buildDeb(newer);
  assert.equal(
    run('dpkg', ['--compare-versions', newer, 'gt', PACKAGE_VERSION]).status,
    0,
    `${newer} is newer for dpkg`,
  );
  // The newer package ships a changed config too, as a release may: dpkg's conffile
  // question then arises, and --force-confold is what answers it unattended.
  const unpacked = mkdtempSync(join(tmpdir(), 'unhitch-upgrade-'));
  t.after(() => rmSync(unpacked, { recursive: true, force: true }));
  assert.equal(run('dpkg-deb', ['-R', newDeb, unpacked]).status, 0);
  const newShippedPath = join(unpacked, CONFIG);
  const newShipped = `${readFileSync(newShippedPath, 'utf8')}# shipped by the newer package\n`;
  writeFileSync(newShippedPath, newShipped);
  const repacked = run('dpkg-deb', ['--root-owner-group', '-Zgzip', '-z1', '-b', unpacked, newDeb]);
  assert.equal(repacked.status, 0, repacked.stderr);
  // The operator's edit of the conffile, on top of the frontend and backend set above.
  writeFileSync(CONFIG, `${readFileSync(CONFIG, 'utf8')}# edited before the upgrade\n`);
  const edited = readFileSync(CONFIG, 'utf8');
  const certificate = readFileSync(SNAKEOIL);
  const account = run('getent', ['passwd', '_unhitch']).stdout;
  const group = run('getent', ['group', '_unhitch']).stdout;

  // systemd is not PID 1 here (no /run/systemd/system): the postinst's restart path must
  // leave a running daemon alone, and say nothing. Under systemd it restarts the unit.
  const withoutSystemd = !existsSync('/run/systemd/system');
  let pid = 0;
  if (withoutSystemd) {
    mkdirSync('/run/unhitch', { recursive: true });
    const [command = '', ...args] = unitCommand('ExecStart');
    const started = run(command, args);
    assert.equal(started.status, 0, started.stderr);
    pid = Number(readFileSync(unitCommand('PIDFile')[0] ?? '', 'utf8').trim());
    assert.ok(isAlive(pid), 'the old version runs');
    t.after(() => {
      if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    });
  } else t.diagnostic('systemd runs here: the postinst restarts the unit, not checked');

  // What an unattended upgrade runs: keep the operator's conffile, ask nothing.
  const upgraded = run(
    'apt-get',
    ['install', '-y', '-q', '-o', 'Dpkg::Options::=--force-confold', newDeb],
    { ...SYSTEM_ENV, DEBIAN_FRONTEND: 'noninteractive' },
  );
  assert.equal(upgraded.status, 0, upgraded.stdout + upgraded.stderr);
  const unpacking = `Unpacking unhitch (${newer}) over (${PACKAGE_VERSION})`;
  assert.ok(upgraded.stdout.includes(unpacking), upgraded.stdout);
  // apt's and debconf's own notes aside (no apt-utils here), nothing on stderr: the
  // maintainer scripts, the restart path included, ran without a word.
  const complaints = upgraded.stderr
    .split('\n')
    .filter((line) => line !== '' && !/^(debconf: |N: )/.test(line));
  assert.deepEqual(complaints, [], upgraded.stderr);
  assert.equal(
    run('dpkg-query', ['-W', `-f=\${Version} \${db:Status-Abbrev}`, 'unhitch']).stdout.trim(),
    `${newer} ii`,
  );
  listed = run('dpkg', ['-L', 'unhitch']).stdout.trim().split('\n');

  assert.equal(readFileSync(CONFIG, 'utf8'), edited, "the operator's config is kept");
  assert.deepEqual(
    readdirSync('/etc/unhitch').filter((name) => name.includes('.dpkg-')),
    ['unhitch.conf.dpkg-dist'],
    "the newer shipped config beside the operator's, nothing else",
  );
  assert.equal(readFileSync(`${CONFIG}.dpkg-dist`, 'utf8'), newShipped);
  assert.deepEqual(readFileSync(SNAKEOIL), certificate, 'the certificate is kept, not remade');
  assert.equal(statSync(SNAKEOIL).mode & 0o777, 0o600);
  assert.equal(run('getent', ['passwd', '_unhitch']).stdout, account, '_unhitch is kept');
  assert.equal(run('getent', ['group', '_unhitch']).stdout, group, '_unhitch group is kept');

  const version = run('unhitch', ['--version']);
  assert.equal(version.status, 0, version.stderr);
  assert.ok(version.stdout.startsWith(`unhitch ${newer} (hitch-compatible`), version.stdout);
  const checked = run('unhitch', ['--test', `--config=${CONFIG}`]);
  assert.equal(checked.status, 0, checked.stderr);
  assert.match(checked.stderr, /unhitch configuration looks ok/);

  if (withoutSystemd) {
    assert.ok(isAlive(pid), 'the postinst left the running daemon alone');
    process.kill(pid, 'SIGTERM');
    await eventually(() => (isAlive(pid) ? undefined : true), 60_000, 'the old daemon to stop');
  }
});

test('apt-get remove keeps the edited config, the certificate and _unhitch; the program goes', {
  skip,
  timeout: 120_000,
}, () => {
  assert.ok(listed.length > 0, 'the package is installed');
  const edited = readFileSync(CONFIG, 'utf8');
  const removed = run('apt-get', ['remove', '-y', '-q', 'unhitch'], {
    ...SYSTEM_ENV,
    DEBIAN_FRONTEND: 'noninteractive',
  });
  assert.equal(removed.status, 0, removed.stderr);
  assert.equal(installedState(), 'rc', 'removed, its configuration kept');
  for (const path of ['/usr/sbin/unhitch', UNIT, '/usr/lib/unhitch'])
    assert.equal(existsSync(path), false, path);
  assert.equal(readFileSync(CONFIG, 'utf8'), edited, "the operator's edits are kept");
  assert.ok(existsSync(SNAKEOIL), 'the certificate is kept');
  assert.equal(run('getent', ['passwd', '_unhitch']).status, 0, 'the _unhitch user is kept');
});

test('apt-get purge leaves nothing: files, config, certificate, _unhitch', {
  skip,
  timeout: 120_000,
}, () => {
  assert.ok(listed.length > 0, 'the package is installed');
  const purged = run('apt-get', ['purge', '-y', '-q', 'unhitch'], {
    ...SYSTEM_ENV,
    DEBIAN_FRONTEND: 'noninteractive',
  });
  assert.equal(purged.status, 0, purged.stderr);
  const ours = listed.filter((path) => path.includes('unhitch'));
  assert.ok(ours.length > 100, 'dpkg -L listed the package');
  assert.deepEqual(
    ours.filter((path) => existsSync(path)),
    [],
    'left after purge',
  );
  for (const path of ['/etc/unhitch', '/run/unhitch', '/var/lib/unhitch', '/var/log/unhitch'])
    assert.equal(existsSync(path), false, path);
  // The unit's enablement (deb-systemd-helper's symlinks and its state) goes too.
  const enablement = run('find', [
    '/etc/systemd/system',
    '/var/lib/systemd/deb-systemd-helper-enabled',
    '-name',
    '*unhitch*',
  ]).stdout;
  assert.equal(enablement, '', 'the unit is still enabled');
  assert.equal(run('getent', ['passwd', '_unhitch']).status, 2, 'the _unhitch user is gone');
  assert.equal(run('getent', ['group', '_unhitch']).status, 2, 'the _unhitch group is gone');
  assert.equal(run('dpkg', ['-s', 'unhitch']).status, 1);
});
