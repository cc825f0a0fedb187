/**
 * The log file's reopen (src/ops/log.ts) in this process, on real files: a reopen that
 * fails after opening the new name must not keep the descriptor it opened.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
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
  followLogFile(logger, { ownerUid: 65534, reopened: () => {} });
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
