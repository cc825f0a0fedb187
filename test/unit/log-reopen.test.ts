/**
 * The log file's reopen (src/ops/log.ts) in this process, on real files: a reopen that
 * fails after opening the new name must not keep the descriptor it opened; a worker's
 * own timed check follows a moved name when no order from the primary comes, and its
 * failure is said once while lines go on into the file held.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  renameSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  createLogger,
  followLogFile,
  LOG_REOPEN_CHECK_ENV,
  reopenCheckMs,
  reopenLog,
} from '../../src/ops/log.js';
import { readLogFile } from '../helpers/log-file.js';
import { eventually } from '../kit/eventually.js';
import type { UnhitchLogLine } from '../kit/unhitch-process.js';

const asRoot = process.getuid?.() === 0;

test('a rotated name root cannot hand to the workers (append-only, chattr +a): each failed reopen closes what it opened', {
  skip: asRoot ? false : 'needs root (fchown, chattr)',
}, (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-log-reopen-'));
  const log = join(dir, 'u.log');
  t.after(() => {
    spawnSync('chattr', ['-a', log]);
    rmSync(dir, { recursive: true, force: true });
  });
  const logger = createLogger({
    level: 'info',
    quiet: false,
    filename: log,
    reopenCheckMs: 3_600_000,
  });
  followLogFile(logger, { owner: { uid: 65534, gid: 65534 }, reopened: () => {} });
  renameSync(log, `${log}.1`);
  writeFileSync(log, '');
  const chattr = spawnSync('chattr', ['+a', log]);
  if (chattr.status !== 0) {
    t.skip(`chattr +a is not supported here: ${chattr.stderr}`);
    return;
  }
  const descriptors = () => readdirSync('/proc/self/fd').length;
  const before = descriptors();
  for (let attempt = 0; attempt < 20; attempt++) reopenLog(logger);
  assert.equal(descriptors(), before, 'descriptors held after 20 failed reopens');
});

test('the reopen interval from the environment: 1 ms to Hitch’s minute, anything else is the minute (node would run a delay past 2^31-1 ms every 1 ms)', () => {
  const saved = process.env[LOG_REOPEN_CHECK_ENV];
  try {
    for (const [text, expected] of [
      ['250', 250],
      ['60000', 60_000],
      ['3000000000', 60_000],
      ['0', 60_000],
      ['-5', 60_000],
      ['1.5', 60_000],
      ['abc', 60_000],
    ] as const) {
      process.env[LOG_REOPEN_CHECK_ENV] = text;
      assert.equal(reopenCheckMs({}), expected, text);
    }
  } finally {
    if (saved === undefined) delete process.env[LOG_REOPEN_CHECK_ENV];
    else process.env[LOG_REOPEN_CHECK_ENV] = saved;
  }
});

test("a worker's own timed check, no order from the primary: a name it cannot open is said once and retried, lines go on into the file held, then it follows the name", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-log-reopen-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const log = join(dir, 'u.log');
  const rotated = `${log}.1`;
  // As a worker's logger is made (createChildLogger): it follows a primary that, here,
  // never orders a reopen, so only its own check can move it.
  const logger = createLogger({
    level: 'info',
    quiet: false,
    filename: log,
    followsPrimary: true,
    reopenCheckMs: 20,
  });
  logger.info('before');
  renameSync(log, rotated);
  // The name cannot be opened for appending: a directory stands there.
  mkdirSync(log);
  const isFailure = (line: UnhitchLogLine) => line.code === 'UNHITCH_LOG_REOPEN';
  await eventually(
    () => readLogFile(rotated).find(isFailure),
    10_000,
    'the failed reopen in the file held',
  );
  // Many more checks, each failing again: still one line, and lines go on.
  for (let line = 0; line < 20; line++) {
    logger.info({ line }, 'during');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await eventually(
    () =>
      readLogFile(rotated).filter((line) => line.msg === 'during').length === 20 ? true : undefined,
    10_000,
    'the lines written meanwhile, in the file held',
  );
  assert.equal(readLogFile(rotated).filter(isFailure).length, 1, 'the failure said once');

  rmdirSync(log);
  writeFileSync(log, '');
  await eventually(
    () => readLogFile(log).find((line) => line.msg === 'log file reopened'),
    10_000,
    'the reopen by its own check',
  );
  logger.info('after');
  await eventually(
    () => readLogFile(log).find((line) => line.msg === 'after'),
    10_000,
    'a line after the reopen in the new file',
  );
  assert.equal(readLogFile(rotated).filter((line) => line.msg === 'after').length, 0);
});
