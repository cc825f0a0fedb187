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
import { createLogger, followLogFile, reopenLog } from '../../src/ops/log.js';

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
