import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { test } from 'node:test';
import {
  AffinityError,
  cpuForWorker,
  parseCpuList,
  pinProcess,
  readAllowedCpus,
  readThreadAffinities,
} from '../../src/cluster/affinity.js';

/** Says so once node runs the script (its V8 platform threads are up by then), then waits. */
const CHILD_LIFETIME_SCRIPT = 'process.stdout.write("ready\\n");setTimeout(()=>{},5000)';

function assertAffinityError(fn: () => unknown): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof AffinityError, String(error));
    assert.equal(error.code, 'UNHITCH_AFFINITY');
    return true;
  });
}

test('parseCpuList: ranges, singles, strides, whitespace; sorted and unique', () => {
  assert.deepEqual(parseCpuList('0-3,8,10-11'), [0, 1, 2, 3, 8, 10, 11]);
  assert.deepEqual(parseCpuList('5'), [5]);
  assert.deepEqual(parseCpuList('0-1\n'), [0, 1]);
  assert.deepEqual(parseCpuList('8,2-3,3,0'), [0, 2, 3, 8]);
  assert.deepEqual(parseCpuList('0-7:3'), [0, 3, 6]);
  assert.deepEqual(parseCpuList(' 1 , 4-5 '), [1, 4, 5]);
});

test('parseCpuList: junk throws UNHITCH_AFFINITY', () => {
  for (const junk of [
    '',
    ' ',
    'a',
    '1-',
    '-1',
    '3-1',
    '1,,2',
    '1-2-3',
    '0x1',
    '1.5',
    '0-3:0',
    '99999999',
  ]) {
    assertAffinityError(() => parseCpuList(junk));
  }
});

test('cpuForWorker: i-th CPU of the mask, wrapping', () => {
  const allowed = [2, 3, 7];
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5, 6].map((i) => cpuForWorker(allowed, i)),
    [2, 3, 7, 2, 3, 7, 2],
  );
  assert.equal(cpuForWorker([5], 9), 5);
  assertAffinityError(() => cpuForWorker([], 0));
  assertAffinityError(() => cpuForWorker([0, 1], -1));
  assertAffinityError(() => cpuForWorker([0, 1], 1.5));
});

test('readAllowedCpus: this process matches /proc and is non-empty', () => {
  const self = readAllowedCpus();
  assert.ok(self.length >= 1);
  assert.deepEqual(readAllowedCpus(process.pid), self);
  // Cross-check with taskset's own view: "pid N's current affinity list: 0,1".
  const tasksetView = execFileSync('taskset', ['-c', '-p', String(process.pid)], {
    encoding: 'utf8',
  });
  assert.deepEqual(parseCpuList(tasksetView.split(':').pop() ?? ''), self);
  assertAffinityError(() => readAllowedCpus(2 ** 30));
});

/** A child that has printed "ready": running node, past any exec by a wrapper. */
function spawnChild(command: string, args: readonly string[]): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`${command} exited (${code}) before ready`)));
    child.stdout?.setEncoding('utf8').once('data', () => resolve(child));
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  await exited;
}

const allowed = readAllowedCpus();
const hasCpu1 = allowed.includes(1);

test('pinProcess: every thread of a real node child ends up on CPU 1', {
  skip: !hasCpu1 && 'CPU 1 not in our mask',
}, async () => {
  const child = await spawnChild(process.execPath, ['-e', CHILD_LIFETIME_SCRIPT]);
  try {
    const pid = child.pid as number;
    const before = readThreadAffinities(pid);
    assert.ok(before.size >= 2, `node child has several threads (got ${before.size})`);
    await pinProcess(pid, 1);
    const after = readThreadAffinities(pid);
    assert.ok(after.size >= 2);
    for (const [tid, cpus] of after) assert.deepEqual(cpus, [1], `thread ${tid}`);
    assert.deepEqual(readAllowedCpus(pid), [1]);
  } finally {
    await stopChild(child);
  }
});

test('readAllowedCpus: a child started under `taskset -c 1` reports [1]', {
  skip: !hasCpu1 && 'CPU 1 not in our mask',
}, async () => {
  const child = await spawnChild('taskset', [
    '-c',
    '1',
    process.execPath,
    '-e',
    CHILD_LIFETIME_SCRIPT,
  ]);
  try {
    const pid = child.pid as number;
    // taskset execs node in place: once it is ready, the pid is the node process.
    assert.deepEqual(readAllowedCpus(pid), [1]);
    for (const [tid, threadCpus] of readThreadAffinities(pid)) {
      assert.deepEqual(threadCpus, [1], `thread ${tid}`);
    }
  } finally {
    await stopChild(child);
  }
});

test('pinProcess rejects with UNHITCH_AFFINITY for a bad pid, bad CPU, or taskset failure', async () => {
  await assert.rejects(pinProcess(0, 0), { code: 'UNHITCH_AFFINITY' });
  await assert.rejects(pinProcess(process.pid, -1), { code: 'UNHITCH_AFFINITY' });
  // A pid that does not exist (`taskset -a -p` itself exits 0 for one).
  await assert.rejects(pinProcess(2 ** 22 + 12345, 0), (error: unknown) => {
    assert.ok(error instanceof AffinityError);
    assert.match(error.message, /no such process/);
    return true;
  });
  // A CPU outside the machine: taskset fails and its message is kept.
  const child = await spawnChild(process.execPath, ['-e', CHILD_LIFETIME_SCRIPT]);
  try {
    await assert.rejects(pinProcess(child.pid as number, 4095), (error: unknown) => {
      assert.ok(error instanceof AffinityError);
      assert.equal(error.code, 'UNHITCH_AFFINITY');
      assert.match(error.message, /taskset -a -p -c 4095 \d+ failed/);
      return true;
    });
  } finally {
    await stopChild(child);
  }
});
