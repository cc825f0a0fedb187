import assert from 'node:assert/strict';
import test from 'node:test';
import { WORKER_MAX_SEMI_SPACE_MIB, workerExecArgv } from '../../src/cluster/worker-heap.js';

test('workers get the Node 22 young-generation cap after the primary’s own flags', () => {
  assert.deepEqual(workerExecArgv(['--enable-source-maps']), [
    '--enable-source-maps',
    `--max-semi-space-size=${WORKER_MAX_SEMI_SPACE_MIB}`,
  ]);
  assert.deepEqual(workerExecArgv([], ''), [`--max-semi-space-size=${WORKER_MAX_SEMI_SPACE_MIB}`]);
});

test('an operator who sized the young generation keeps their setting', () => {
  for (const flag of [
    '--max-semi-space-size=64',
    '--max_semi_space_size=64',
    '--min-semi-space-size=2',
    '--semi-space-growth-factor=4',
    '--scavenger-max-new-space-capacity-mb=64',
    '--max-heap-size=512',
  ]) {
    assert.deepEqual(workerExecArgv([flag]), [flag], flag);
    assert.deepEqual(workerExecArgv([], `--inspect=0  ${flag}`), [], `NODE_OPTIONS ${flag}`);
  }
  // --max-old-space-size sizes the old generation only: the cap still applies.
  assert.deepEqual(workerExecArgv(['--max-old-space-size=256']), [
    '--max-old-space-size=256',
    `--max-semi-space-size=${WORKER_MAX_SEMI_SPACE_MIB}`,
  ]);
});
