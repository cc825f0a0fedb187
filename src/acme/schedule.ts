/**
 * When to renew and when to retry: pure functions of the certificate's validity and the
 * failure count, so the numbers can be checked without waiting for them.
 */

/** Renew after this share of the lifetime (Let's Encrypt's advice: 60 of 90 days). */
export const RENEW_AT_SHARE = 2 / 3;
/**
 * Up to this share of the lifetime earlier, at random: many hosts with certificates from
 * one batch do not all come back to the CA in the same second.
 */
export const RENEW_JITTER_SHARE = 1 / 30;
/** Retries back off up to this, however many orders failed. */
export const RETRY_MAX_MS = 3_600_000;
/** node timers clamp anything above 2^31-1 ms to 1 ms; a longer wait is taken in steps. */
export const MAX_TIMER_MS = 2_147_483_647;

export interface Validity {
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
}

/** The moment (epoch ms) to renew a certificate with this validity; `random` in [0, 1). */
export function renewalTimeMs(validity: Validity, random: number): number {
  const lifetime = Math.max(0, validity.notAfterMs - validity.notBeforeMs);
  return validity.notBeforeMs + lifetime * (RENEW_AT_SHARE - RENEW_JITTER_SHARE * random);
}

/** The wait after the `failures`-th failure in a row (1 = the first): doubling, capped. */
export function retryDelayMs(failures: number, firstRetrySec: number): number {
  const exponent = Math.min(Math.max(failures, 1) - 1, 30);
  return Math.min(firstRetrySec * 1000 * 2 ** exponent, RETRY_MAX_MS);
}
