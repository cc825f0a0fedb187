/**
 * max-handshakes' hysteresis (src/proxy/handshake-limit.ts): pause at the limit, resume
 * only at three quarters of it and no sooner than MIN_PAUSE_MS after the pause, so a flood
 * that hovers at the limit cannot toggle accepting (an IPC round trip each) per handshake.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { NOOP_OBSERVER } from '../../src/proxy/events.js';
import { HandshakeLimit, MIN_PAUSE_MS } from '../../src/proxy/handshake-limit.js';

function harness(max: number) {
  let inProgress = 0;
  const events: string[] = [];
  const lines: object[] = [];
  const log = (fields: object): void => {
    lines.push(fields);
  };
  const limit = new HandshakeLimit(
    max,
    () => inProgress,
    { pause: () => events.push('pause'), resume: () => events.push('resume') },
    {
      ...NOOP_OBSERVER,
      acceptPaused: (reason) => events.push(`paused:${reason}`),
      // Timers run on the loop's millisecond clock: a little early against performance.now().
      acceptResumed: (reason, ms) => events.push(`resumed:${reason}:${ms >= MIN_PAUSE_MS - 2}`),
    },
    { fatal: log, error: log, warn: log, info: log, debug: log },
  );
  return {
    limit,
    events,
    lines,
    open(): void {
      inProgress += 1;
      limit.opened();
    },
    settle(): void {
      inProgress -= 1;
      limit.settled();
    },
  };
}

test('pauses at the limit, resumes at three quarters, not sooner than MIN_PAUSE_MS', async () => {
  const h = harness(8);
  assert.equal(h.limit.lowWater, 6);
  for (let index = 0; index < 7; index++) h.open();
  assert.deepEqual(h.events, []);
  h.open();
  assert.deepEqual(h.events, ['pause', 'paused:max_handshakes']);
  assert.equal(h.limit.paused, true);
  h.settle(); // 7: above the low-water mark
  await sleep(MIN_PAUSE_MS * 2);
  assert.equal(h.limit.paused, true);
  h.settle(); // 6: resumes at once (the minimum pause is over)
  assert.deepEqual(h.events.slice(2), ['resumed:max_handshakes:true', 'resume']);
  assert.equal(h.limit.paused, false);
});

test('a quick drop below the mark still waits MIN_PAUSE_MS; a rise meanwhile keeps it paused', async () => {
  const h = harness(4);
  for (let index = 0; index < 4; index++) h.open();
  h.settle();
  h.settle(); // 2, below the mark at once: the resume is due at MIN_PAUSE_MS
  assert.deepEqual(h.events, ['pause', 'paused:max_handshakes']);
  await sleep(MIN_PAUSE_MS * 3);
  assert.deepEqual(h.events.slice(2), ['resumed:max_handshakes:true', 'resume']);

  const rising = harness(4);
  for (let index = 0; index < 4; index++) rising.open();
  rising.settle();
  rising.settle(); // 2: resume scheduled…
  rising.open();
  rising.open(); // …but back at 4 when it is due: still paused
  await sleep(MIN_PAUSE_MS * 3);
  assert.equal(rising.limit.paused, true);
  rising.settle(); // 3: the minimum pause is long over, resume at once
  assert.equal(rising.limit.paused, false);

  const stopped = harness(4);
  for (let index = 0; index < 4; index++) stopped.open();
  stopped.settle(); // 3: at the mark (lowWater = 3), resume scheduled
  stopped.limit.stop(); // a drain: nothing may resume now
  await sleep(MIN_PAUSE_MS * 3);
  assert.deepEqual(stopped.events, ['pause', 'paused:max_handshakes']);
});

test('a limit of 1 resumes only when nothing is handshaking; the pause line is written once per interval', async () => {
  const h = harness(1);
  assert.equal(h.limit.lowWater, 0);
  for (let round = 0; round < 3; round++) {
    h.open();
    assert.equal(h.limit.paused, true);
    h.settle();
    await sleep(MIN_PAUSE_MS * 3);
    assert.equal(h.limit.paused, false);
  }
  assert.equal(h.events.filter((event) => event === 'pause').length, 3);
  assert.equal(h.lines.length, 1, 'one line for three pauses within 10 s');
  assert.deepEqual(
    { ...h.lines[0], intervalSec: undefined },
    {
      reason: 'max_handshakes',
      maxHandshakes: 1,
      pauses: 1,
      intervalSec: undefined,
      code: 'UNHITCH_ACCEPT_PAUSED',
    },
  );
});
