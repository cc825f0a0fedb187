/**
 * The restart back-off of a worker slot: doubling while it dies young, capped, reset by a
 * stable life. The real-process check is in test/integration/cluster-failures.test.ts
 * (a fork that keeps failing).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  RESTART_DELAY_MAX_MS,
  RESTART_DELAY_MIN_MS,
  restartDelayMs,
  STABLE_AFTER_MS,
} from '../../src/cluster/restart-policy.js';

/** The delays of `deaths` restarts in a row, each worker living `livedMs`. */
function delays(deaths: number, livedMs: number, start?: number): number[] {
  const seen: number[] = [];
  let previous = start;
  for (let death = 0; death < deaths; death++) {
    previous = restartDelayMs(previous, livedMs);
    seen.push(previous);
  }
  return seen;
}

test('a slot that keeps dying young: 200 ms, doubling each time, capped at 30 s', () => {
  assert.deepEqual(
    delays(10, 0),
    [200, 400, 800, 1_600, 3_200, 6_400, 12_800, 25_600, 30_000, 30_000],
  );
  assert.equal(RESTART_DELAY_MAX_MS, 30_000);
  assert.equal(restartDelayMs(RESTART_DELAY_MAX_MS, STABLE_AFTER_MS - 1), 30_000);
});

test('a stable life resets the back-off: the next restart is quick, the one after doubles from there', () => {
  assert.equal(STABLE_AFTER_MS, 5_000);
  assert.equal(restartDelayMs(30_000, STABLE_AFTER_MS), RESTART_DELAY_MIN_MS);
  assert.equal(restartDelayMs(30_000, 3_600_000), 100);
  assert.equal(restartDelayMs(undefined, STABLE_AFTER_MS), 100);
  // Dying young again after the reset starts the doubling over.
  assert.deepEqual(delays(3, 10, restartDelayMs(30_000, STABLE_AFTER_MS)), [200, 400, 800]);
});
