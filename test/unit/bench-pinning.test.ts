import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { availableParallelism } from 'node:os';
import { test } from 'node:test';
import { keepOnCpu } from '../../bench/lib/proxies.js';
import { readAllowedCpus } from '../../src/cluster/affinity.js';
import { processTree } from '../kit/proc.js';

test('a proxy that pins itself off its CPU (as Hitch does) is moved back; one that stays is left alone', {
  skip: availableParallelism() < 2 ? 'needs two CPUs' : false,
  timeout: 10_000,
}, async (t) => {
  // Started on CPU 1 like a bench proxy; its child then pins itself to CPU 0, as Hitch's
  // worker does whatever mask it inherited.
  const root = spawn(
    'taskset',
    [
      '-c',
      '1',
      'sh',
      '-c',
      'sh -c "taskset -p -c 0 \\$\\$ >/dev/null; echo pinned; exec sleep 30" & wait',
    ],
    {
      stdio: ['ignore', 'pipe', 'ignore'],
      detached: true, // its own process group, so the whole tree is killed by PID
    },
  );
  t.after(() => {
    if (root.pid !== undefined) process.kill(-root.pid, 'SIGKILL');
  });
  await once(root, 'spawn');
  const rootPid = root.pid as number;
  // The child says so once it has pinned itself (same pid before and after its exec).
  await once(root.stdout as NonNullable<typeof root.stdout>, 'data');
  const [, worker] = processTree(rootPid);
  assert.ok(worker !== undefined, 'the child is running');
  assert.deepEqual(readAllowedCpus(worker), [0], 'the child pinned itself to CPU 0');
  assert.deepEqual(readAllowedCpus(rootPid), [1]);

  assert.equal(await keepOnCpu(rootPid), 1, 'one thread had left the mask');
  assert.deepEqual(readAllowedCpus(worker), [1]);
  assert.equal(await keepOnCpu(rootPid), 0, 'nothing to move the second time');
});
