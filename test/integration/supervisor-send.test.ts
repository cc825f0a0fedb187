import assert from 'node:assert/strict';
import cluster, { type Worker } from 'node:cluster';
import test from 'node:test';
import { fileURLToPath } from 'node:url';
import { processEnded, supervisorInProcess } from '../helpers/cluster.js';

const IDLE_WORKER = fileURLToPath(new URL('../fixtures/idle-worker.js', import.meta.url));

test('a drain order to a worker that has just died is logged, not thrown (SIGTERM during a reload)', async (t) => {
  cluster.setupPrimary({ exec: IDLE_WORKER });

  const { supervisor, lines } = supervisorInProcess();

  const worker: Worker = cluster.fork();
  await new Promise((resolve) => worker.once('online', resolve));
  const exited = new Promise((resolve) => worker.once('exit', resolve));
  const pid = worker.process.pid as number;
  process.kill(pid, 'SIGKILL');
  // Synchronously, so that this event loop has not read the channel's end yet: node still
  // calls the worker connected, as the primary did when SIGTERM came mid-reload.
  const deadline = Date.now() + 10_000;
  while (!processEnded(pid) && Date.now() < deadline) {
    // spin: the point is not to yield to the event loop
  }
  assert.ok(processEnded(pid), 'the worker died within 10 s');
  assert.equal(worker.isConnected(), true, 'node has not noticed yet');

  const uncaught: Error[] = [];
  const onUncaught = (error: Error): void => {
    uncaught.push(error);
  };
  process.on('uncaughtException', onUncaught);
  t.after(() => process.off('uncaughtException', onUncaught));
  supervisor.send(worker, { type: 'unhitch:drain', graceMs: 1_000 });
  await exited;
  await new Promise((resolve) => setImmediate(resolve));

  assert.deepEqual(uncaught, []);
  const logged = lines.find((line) => line.code === 'UNHITCH_WORKER_IPC');
  assert.ok(logged, `a UNHITCH_WORKER_IPC line:\n${JSON.stringify(lines)}`);
  assert.equal(logged.message, 'unhitch:drain');
  assert.equal(logged.workerPid, pid);
});
