/**
 * A generation whose workers cannot be forked (the primary out of descriptors): the
 * reloader's startGeneration() must come back with false, not wait for an 'exit' that node
 * never emits for a child it could not create. This process is the primary here, its
 * descriptors exhausted for real (prlimit) while it forks.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import cluster from 'node:cluster';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import test from 'node:test';
import { DEFAULT_CONFIG } from '../../src/config/model.js';
import { supervisorInProcess } from '../helpers/cluster.js';

function softNofile(): string {
  const line = readFileSync('/proc/self/limits', 'utf8')
    .split('\n')
    .find((entry) => entry.startsWith('Max open files'));
  return line?.split(/\s{2,}/)[1] ?? 'unlimited';
}

test("a reload's startGeneration whose forks fail with EMFILE resolves false, leaves no worker in node:cluster and restarts nothing", async (t) => {
  const { supervisor, lines } = supervisorInProcess();
  supervisor.install(() => {});
  t.after(() => supervisor.halt());
  supervisor.current = supervisor.newGeneration(DEFAULT_CONFIG, []);
  const next = supervisor.newGeneration({ ...DEFAULT_CONFIG, pinWorkers: false }, []);

  // With no descriptor left, this process could not start prlimit again: a helper started
  // now raises the limit back when told to over the pipe it already has.
  const soft = softNofile();
  const restorer = spawn(
    'sh',
    ['-c', `read line; exec prlimit --pid ${process.pid} --nofile=${soft}:`],
    { stdio: ['pipe', 'ignore', 'inherit'] },
  );
  const restored = once(restorer, 'exit');
  t.after(() => restorer.kill());
  assert.equal(
    spawnSync('prlimit', ['--pid', String(process.pid), '--nofile=3:']).status,
    0,
    'prlimit',
  );
  let started: boolean;
  try {
    started = await supervisor.startGeneration(next, 2);
  } finally {
    restorer.stdin?.write('\n');
    await restored;
  }
  assert.equal(started, false);
  assert.deepEqual(Object.keys(cluster.workers ?? {}), [], 'no worker left in node:cluster');
  assert.equal(next.workers.size, 0);
  const failures = lines.filter((line) => line.code === 'UNHITCH_WORKER_SPAWN');
  assert.equal(failures.length, 2, JSON.stringify(lines));
  for (const failure of failures) {
    assert.match(JSON.stringify(failure.err), /EMFILE/);
    assert.equal(failure.restartInMs, undefined, 'not the serving generation: no restart');
  }
});
