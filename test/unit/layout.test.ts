/**
 * The repository's top level is fixed (the developers' brief): a new top-level folder or
 * file (a `bin/`, a `scripts/`) belongs under one of these instead.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../../..');

const TOP_LEVEL = new Set([
  'package.json',
  'package-lock.json',
  'tsconfig.json',
  'src',
  'test',
  'bench',
  'hitch-compat.conf',
  'systemd',
  'README.md',
  '.ci',
  'docs',
  'packaging',
  // Tool settings the layout leaves room for.
  '.gitignore',
  '.npmrc',
  'biome.json',
]);

test('the tracked top level is the fixed layout', (t) => {
  let listed: string;
  try {
    listed = execFileSync('git', ['ls-files', '-z'], { cwd: ROOT, encoding: 'utf8' });
  } catch {
    t.skip('not a git checkout');
    return;
  }
  const topLevel = new Set(
    listed
      .split('\0')
      .filter(Boolean)
      .map((path) => path.split('/')[0]),
  );
  const extra = [...topLevel].filter((name) => name !== undefined && !TOP_LEVEL.has(name));
  assert.deepEqual(extra, [], `outside the fixed top level: ${extra.join(', ')}`);
});
