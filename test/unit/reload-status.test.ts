/**
 * The reload verdict file is written by the root primary beside its pidfile, often in a
 * directory others can write to: nothing planted there (a symlink at the verdict's name
 * or at a temporary name it once used, `<verdict>.<pid>.tmp`) is ever written through.
 */
import assert from 'node:assert/strict';
import {
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
import { ReloadStatusFile } from '../../src/cluster/reload-status.js';

test('publishing a verdict writes through no planted symlink', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-reload-status-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const victim = join(dir, 'victim');
  writeFileSync(victim, 'precious\n');
  const path = join(dir, 'unhitch.reload');
  // Where the verdict used to be written first, a name anyone could predict.
  symlinkSync(victim, `${path}.${process.pid}.tmp`);
  symlinkSync(victim, path);
  new ReloadStatusFile(path).publish({
    begunAt: process.hrtime.bigint(),
    outcome: 'reloaded',
    message: 'reloaded',
    generation: 2,
  });
  assert.equal(readFileSync(victim, 'utf8'), 'precious\n', 'the symlinks target is untouched');
  assert.equal(lstatSync(path).isSymbolicLink(), false, 'the verdict replaced the symlink');
  const verdict = JSON.parse(readFileSync(path, 'utf8')) as { pid: number; outcome: string };
  assert.equal(verdict.pid, process.pid);
  assert.equal(verdict.outcome, 'reloaded');
  // No temporary file is left behind beside it.
  assert.deepEqual(readdirSync(dir).sort(), [
    'unhitch.reload',
    `unhitch.reload.${process.pid}.tmp`,
    'victim',
  ]);
});
