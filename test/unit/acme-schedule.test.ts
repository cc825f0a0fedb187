/**
 * Renewal and retry timing (pure), and the worker-side tls-alpn-01 responder's refusal of
 * names the acme block does not list.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RETRY_MAX_MS, renewalTimeMs, retryDelayMs } from '../../src/acme/schedule.js';
import { AcmeChallengeResponder } from '../../src/tls/acme-challenge.js';
import { localhostCertificate } from '../kit/pki.js';

const DAY = 86_400_000;

test('renewal at two thirds of the lifetime, up to 1/30 of it earlier at random', () => {
  const validity = { notBeforeMs: 1_000 * DAY, notAfterMs: 1_090 * DAY };
  assert.equal(renewalTimeMs(validity, 0), 1_060 * DAY);
  // 1/30 of 90 days = 3 days of jitter at most.
  assert.ok(renewalTimeMs(validity, 0.999999) > 1_057 * DAY);
  assert.ok(renewalTimeMs(validity, 0.5) < 1_060 * DAY);
  // A certificate with no lifetime left to speak of: renew at its notBefore, never later.
  assert.equal(renewalTimeMs({ notBeforeMs: 5, notAfterMs: 5 }, 0.5), 5);
});

test('retries double from the configured first delay and stop growing at an hour', () => {
  assert.deepEqual(
    [1, 2, 3, 4].map((failures) => retryDelayMs(failures, 60)),
    [60_000, 120_000, 240_000, 480_000],
  );
  assert.equal(retryDelayMs(0, 60), 60_000, 'a zero count is the first retry');
  assert.equal(retryDelayMs(7, 60), RETRY_MAX_MS);
  assert.equal(retryDelayMs(10_000, 1), RETRY_MAX_MS, 'no overflow');
  assert.equal(retryDelayMs(1, 7_200), RETRY_MAX_MS, 'the cap holds for the first retry too');
});

test('tls-alpn-01 responder: opens only the acme names, answers only open challenges', () => {
  const { cert, material } = localhostCertificate();
  const key = material.key;
  const responder = new AcmeChallengeResponder(['a.example.com']);
  assert.equal(responder.answers('a.example.com'), false, 'nothing open yet');
  assert.equal(responder.open('evil.example.com', cert, key), false);
  assert.equal(responder.answers('evil.example.com'), false);
  assert.equal(responder.open('A.Example.com.', cert, key), true);
  assert.equal(responder.answers('a.example.com'), true);
  assert.equal(responder.answers(undefined), false, 'no SNI, no challenge');
  responder.close('a.example.com');
  assert.equal(responder.answers('a.example.com'), false);
});
