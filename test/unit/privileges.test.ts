import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  linkSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { checkIdentity, resolveIdentity, writePidfile } from '../../src/ops/privileges.js';

const MISSING_NAME = 'unhitch-no-such-account';
const isRoot = process.getuid?.() === 0;
const compiledModuleUrl = new URL('../../src/ops/privileges.js', import.meta.url).href;

/** nobody's ids as the system reports them, independent of the code under test. */
function nobodyIds(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((entry) => entry.startsWith('nobody:'));
  assert.ok(line, 'nobody in /etc/passwd');
  const fields = line.split(':');
  return { uid: Number(fields[2]), gid: Number(fields[3]) };
}

test('resolveIdentity: neither set is undefined', () => {
  assert.equal(resolveIdentity(undefined, undefined), undefined);
});

test('resolveIdentity: root and nobody', () => {
  assert.deepEqual(resolveIdentity('root', undefined), {
    uid: 0,
    gid: 0,
    user: 'root',
    group: undefined,
  });
  const nobody = nobodyIds();
  assert.deepEqual(resolveIdentity('nobody', undefined), {
    uid: nobody.uid,
    gid: nobody.gid,
    user: 'nobody',
    group: undefined,
  });
  // An explicit group overrides the user's primary group.
  assert.deepEqual(resolveIdentity('nobody', 'root'), {
    uid: nobody.uid,
    gid: 0,
    user: 'nobody',
    group: 'root',
  });
});

test('resolveIdentity: group only keeps the current uid', () => {
  const identity = resolveIdentity(undefined, 'root');
  assert.deepEqual(identity, { uid: process.getuid?.(), gid: 0, user: undefined, group: 'root' });
});

test('resolveIdentity: a missing user or group throws UNHITCH_USER_UNKNOWN', () => {
  assert.throws(
    () => resolveIdentity(MISSING_NAME, undefined),
    (err: { code?: string; message?: string }) =>
      err.code === 'UNHITCH_USER_UNKNOWN' && err.message === `user ${MISSING_NAME} does not exist`,
  );
  assert.throws(
    () => resolveIdentity('root', MISSING_NAME),
    (err: { code?: string; message?: string }) =>
      err.code === 'UNHITCH_USER_UNKNOWN' && err.message === `group ${MISSING_NAME} does not exist`,
  );
});

test('checkIdentity: missing user or group without root throws too, as Hitch ("Invalid user")', () => {
  for (const config of [
    { user: MISSING_NAME, group: undefined },
    { user: undefined, group: MISSING_NAME },
  ]) {
    assert.throws(
      () => checkIdentity(config, { isRoot: false }),
      (err: { code?: string; message?: string }) =>
        err.code === 'UNHITCH_USER_UNKNOWN' && / does not exist \(create /.test(err.message ?? ''),
    );
  }
});

test('checkIdentity: missing user or group as root throws', () => {
  assert.throws(
    () => checkIdentity({ user: MISSING_NAME, group: undefined }, { isRoot: true }),
    (err: { code?: string; message?: string }) =>
      err.code === 'UNHITCH_USER_UNKNOWN' &&
      (err.message ?? '').startsWith(`user ${MISSING_NAME} does not exist`),
  );
  assert.throws(
    () => checkIdentity({ user: 'nobody', group: MISSING_NAME }, { isRoot: true }),
    (err: { code?: string }) => err.code === 'UNHITCH_USER_UNKNOWN',
  );
});

test('checkIdentity: existing accounts as root, nothing set, and existing without root', () => {
  assert.deepEqual(checkIdentity({ user: 'nobody', group: 'root' }, { isRoot: true }), {
    warnings: [],
  });
  assert.deepEqual(checkIdentity({ user: undefined, group: undefined }, { isRoot: false }), {
    warnings: [],
  });
  const { warnings } = checkIdentity({ user: 'nobody', group: undefined }, { isRoot: false });
  assert.equal(warnings.length, 1);
  assert.match(warnings[0] ?? '', /ignoring user nobody/);
});

test('writePidfile writes the pid and the remover deletes it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-pid-'));
  try {
    const path = join(dir, 'unhitch.pid');
    const remove = writePidfile(path);
    assert.equal(readFileSync(path, 'utf8'), `${process.pid}\n`);
    remove();
    assert.equal(existsSync(path), false);
    remove(); // idempotent
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pidfile remover leaves a successor pidfile alone', () => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-pid-'));
  try {
    const path = join(dir, 'unhitch.pid');
    const remove = writePidfile(path);
    writeFileSync(path, '999999\n');
    remove();
    assert.equal(readFileSync(path, 'utf8'), '999999\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('writePidfile replaces a symlink or hard link planted at its name; the victim is unchanged', () => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-pid-'));
  try {
    for (const plant of [symlinkSync, linkSync]) {
      const victim = join(dir, 'victim');
      writeFileSync(victim, 'root:x:0:0::/root:/bin/sh\n', { mode: 0o600 });
      const path = join(dir, 'unhitch.pid');
      plant(victim, path);
      const remove = writePidfile(path);
      assert.equal(readFileSync(victim, 'utf8'), 'root:x:0:0::/root:/bin/sh\n', plant.name);
      assert.equal(lstatSync(path).isFile(), true, `${plant.name}: a file of its own`);
      assert.equal(lstatSync(path).nlink, 1);
      assert.equal(lstatSync(path).mode & 0o777, 0o644 & ~process.umask());
      assert.equal(readFileSync(path, 'utf8'), `${process.pid}\n`);
      remove();
      assert.deepEqual(readdirSync(dir), ['victim'], 'no temporary file left, the pidfile gone');
      rmSync(victim);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('writePidfile into a missing directory throws UNHITCH_PIDFILE', () => {
  assert.throws(
    () => writePidfile('/nonexistent-unhitch-dir/unhitch.pid'),
    (err: { code?: string }) => err.code === 'UNHITCH_PIDFILE',
  );
});

test('dropPrivileges switches a child process to nobody', { skip: !isRoot && 'needs root' }, () => {
  const script = `
    const { dropPrivileges, resolveIdentity } = await import(${JSON.stringify(compiledModuleUrl)});
    dropPrivileges(resolveIdentity('nobody', undefined));
    console.log(JSON.stringify({ uid: process.getuid(), gid: process.getgid(), groups: process.getgroups() }));
  `;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 15_000,
  });
  assert.equal(child.status, 0, child.stderr);
  const nobody = nobodyIds();
  assert.deepEqual(JSON.parse(child.stdout), {
    uid: nobody.uid,
    gid: nobody.gid,
    groups: [nobody.gid],
  });
});

test('dropPrivileges is a no-op without root', () => {
  const script = `
    const { dropPrivileges } = await import(${JSON.stringify(compiledModuleUrl)});
    dropPrivileges({ uid: 0, gid: 0, user: 'root', group: undefined });
    console.log(process.getuid());
  `;
  const nobody = nobodyIds();
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 15_000,
    ...(isRoot ? { uid: nobody.uid, gid: nobody.gid } : {}),
  });
  assert.equal(child.status, 0, child.stderr);
  assert.equal(
    Number(child.stdout.trim()),
    process.getuid?.() === 0 ? nobody.uid : process.getuid?.(),
  );
});
