/**
 * Hitch's `user`, `group` and `pidfile`: resolve names to ids, check them at startup,
 * switch identity after binding, and keep a pidfile for init scripts.
 */

import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  openSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { userInfo } from 'node:os';
import { basename, dirname, join } from 'node:path';
import type { ProxyConfig } from '../config/model.js';
import { UnhitchError } from '../errors.js';

export interface Identity {
  readonly uid: number;
  readonly gid: number;
  /** undefined when only `group` was configured (the uid stays the current one). */
  readonly user: string | undefined;
  readonly group: string | undefined;
}

export type PrivilegeErrorCode =
  | 'UNHITCH_USER_UNKNOWN'
  | 'UNHITCH_ROOT_WORKERS'
  | 'UNHITCH_PRIVILEGE_DROP'
  | 'UNHITCH_PIDFILE';

export class PrivilegeError extends UnhitchError<PrivilegeErrorCode> {
  constructor(code: PrivilegeErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'PrivilegeError';
  }
}

type Database = 'passwd' | 'group';

/** The colon-separated fields of one account-database entry, or undefined if none. */
function lookupEntry(database: Database, name: string): string[] | undefined {
  // getent goes through NSS, so LDAP/sssd accounts resolve like they do for Hitch's
  // getpwnam(); the plain files are the fallback where getent is not installed.
  const getent = spawnSync('getent', [database, name], { encoding: 'utf8', timeout: 5_000 });
  if (!getent.error) {
    const line = getent.status === 0 ? getent.stdout.split('\n')[0] : undefined;
    return line ? line.split(':') : undefined;
  }
  const lines = readFileSync(`/etc/${database}`, 'utf8').split('\n');
  const line = lines.find((candidate) => candidate.split(':')[0] === name);
  return line ? line.split(':') : undefined;
}

function parseId(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d+$/.test(text)) return undefined;
  return Number(text);
}

interface UserEntry {
  readonly uid: number;
  readonly gid: number;
}

function lookupUser(name: string): UserEntry | undefined {
  const fields = lookupEntry('passwd', name);
  const uid = parseId(fields?.[2]);
  const gid = parseId(fields?.[3]);
  return uid === undefined || gid === undefined ? undefined : { uid, gid };
}

function lookupGroupId(name: string): number | undefined {
  return parseId(lookupEntry('group', name)?.[2]);
}

function unknownAccount(kind: 'user' | 'group', name: string): PrivilegeError {
  return new PrivilegeError('UNHITCH_USER_UNKNOWN', `${kind} ${name} does not exist`);
}

/**
 * Names to ids. undefined when neither is set. The user's primary group applies unless
 * `group` is given; with only `group`, the uid is the current one. Throws
 * `UNHITCH_USER_UNKNOWN` for a name with no account.
 */
export function resolveIdentity(
  user: string | undefined,
  group: string | undefined,
): Identity | undefined {
  if (user === undefined && group === undefined) return undefined;
  const userEntry = user === undefined ? undefined : lookupUser(user);
  if (user !== undefined && userEntry === undefined) throw unknownAccount('user', user);
  const groupId = group === undefined ? undefined : lookupGroupId(group);
  if (group !== undefined && groupId === undefined) throw unknownAccount('group', group);
  return {
    uid: userEntry?.uid ?? currentUid(),
    gid: groupId ?? userEntry?.gid ?? currentGid(),
    user,
    group,
  };
}

function currentUid(): number {
  return process.getuid?.() ?? 0;
}

function currentGid(): number {
  return process.getgid?.() ?? 0;
}

function currentUserName(): string {
  try {
    return userInfo().username;
  } catch {
    // A uid with no passwd entry (common in containers).
    return `uid ${currentUid()}`;
  }
}

/**
 * Startup check for `user`/`group`. A missing account is fatal, root or not, as in Hitch
 * (as root we would otherwise keep serving as root). An existing one without root cannot be
 * switched to: a warning, so a developer can run a production hitch.conf unprivileged.
 */
export function checkIdentity(
  config: Pick<ProxyConfig, 'user' | 'group'>,
  options: { isRoot: boolean },
): { warnings: string[] } {
  const warnings: string[] = [];
  const accounts: Array<['user' | 'group', string | undefined]> = [
    ['user', config.user],
    ['group', config.group],
  ];
  for (const [kind, name] of accounts) {
    if (name === undefined) continue;
    const exists =
      kind === 'user' ? lookupUser(name) !== undefined : lookupGroupId(name) !== undefined;
    if (exists) {
      if (!options.isRoot) {
        warnings.push(
          `not running as root; ignoring ${kind} ${name}, running as ${currentUserName()}`,
        );
      }
      continue;
    }
    // Hitch's config parser says "Invalid user" (exit 1) whoever runs it: so do we.
    throw new PrivilegeError(
      'UNHITCH_USER_UNKNOWN',
      `${kind} ${name} does not exist${options.isRoot ? '; refusing to keep running as root' : ''} ` +
        `(create the ${kind}, e.g. with useradd/groupadd, or change "${kind} =" in the config)`,
    );
  }
  return { warnings };
}

/** Hitch's words (hitch.c, in each child after drop_privileges()), kept for scripts. */
export const ROOT_WORKERS_MESSAGE = 'Refusing to run workers as root.';

/**
 * Hitch forks its children, drops privileges in each and then, if the effective uid is
 * still 0, logs "{core} ERROR: Refusing to run workers as root." and _exit(1)s: a start as
 * root without `user` (or with only `group`, or `user = root`) never serves. We judge it
 * before forking, from the identity the workers would drop to, so `--test` says the same.
 */
export function checkNotRootWorkers(identity: Identity | undefined, isRoot: boolean): void {
  if (!isRoot) return;
  if (identity !== undefined && identity.user !== undefined && identity.uid !== 0) return;
  throw new PrivilegeError(
    'UNHITCH_ROOT_WORKERS',
    `${ROOT_WORKERS_MESSAGE} Set "user" in the config or --user (e.g. --user=nobody)`,
  );
}

/**
 * Switch to `identity` for good. Order matters: supplementary groups and gid first, while
 * we still have the privilege to change them; setuid last. A no-op unless running as root.
 * With only a group configured the uid is left alone, as Hitch does.
 */
export function dropPrivileges(identity: Identity): void {
  if (currentUid() !== 0) return;
  try {
    process.setgroups?.([identity.gid]);
    process.setgid?.(identity.gid);
    if (identity.user !== undefined) process.setuid?.(identity.uid);
  } catch (err) {
    throw new PrivilegeError(
      'UNHITCH_PRIVILEGE_DROP',
      `cannot switch to ${describeIdentity(identity)}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  // Defence in depth: never carry on with privileges the config said to give up.
  const keptRoot = identity.user !== undefined && identity.uid !== 0 && currentUid() === 0;
  if (keptRoot || currentGid() !== identity.gid) {
    throw new PrivilegeError(
      'UNHITCH_PRIVILEGE_DROP',
      `switch to ${describeIdentity(identity)} did not take effect`,
    );
  }
}

function describeIdentity(identity: Identity): string {
  const user = identity.user === undefined ? '' : `user ${identity.user} (uid ${identity.uid}), `;
  const group = identity.group === undefined ? '' : ` (${identity.group})`;
  return `${user}gid ${identity.gid}${group}`;
}

/**
 * Write `process.pid` and a newline. The returned remover deletes the file only while it
 * still holds our pid, so a stopping instance never removes its successor's pidfile.
 *
 * Written as root, often in a directory others can write to: the pid goes into a new
 * file of our own (O_EXCL | O_NOFOLLOW: never an existing file, never through a symlink)
 * that is then renamed over the name. A symlink or a hard link planted at the name is
 * replaced, never followed, so no other file is ever truncated or written.
 */
export function writePidfile(path: string): () => void {
  const content = `${process.pid}\n`;
  try {
    writeFileNoFollow(path, content, 0o644);
  } catch (err) {
    throw new PrivilegeError(
      'UNHITCH_PIDFILE',
      `cannot write pidfile ${path}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  let removed = false;
  return () => {
    if (removed) return;
    removed = true;
    try {
      if (readFileNoFollow(path) === content) unlinkSync(path);
    } catch {
      // Already gone (or unreadable after the privilege drop): nothing left to clean.
    }
  };
}

/**
 * `content` in a fresh file beside `path`, then renamed onto it (atomic for readers too).
 * Root's way to write into a directory others may write to: the temporary name is
 * unpredictable and opened O_EXCL | O_NOFOLLOW, so no planted file or symlink is written
 * through, and one planted at `path` is replaced, not followed.
 */
export function writeFileNoFollow(path: string, content: string, mode: number): void {
  const temporary = join(
    dirname(path),
    `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}`,
  );
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
  const descriptor = openSync(temporary, flags, mode);
  try {
    try {
      writeSync(descriptor, content);
    } finally {
      closeSync(descriptor);
    }
    renameSync(temporary, path);
  } catch (error) {
    unlinkSync(temporary);
    throw error;
  }
}

function readFileNoFollow(path: string): string {
  const descriptor = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    return readFileSync(descriptor, 'utf8');
  } finally {
    closeSync(descriptor);
  }
}
