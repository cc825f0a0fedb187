/** What bench/abuse's attacker and legitimate clients are told and report (shared by both sides). */

export const ATTACKS = [
  'idle',
  'slow-hello',
  'plaintext',
  'handshake',
  'slowloris-pre',
  'slowloris-post',
] as const;
export type AttackKind = (typeof ATTACKS)[number];

/** The rows of a run: the attack-free baseline, then each attack. */
export const ROWS = ['baseline', ...ATTACKS] as const;
export type RowKind = (typeof ROWS)[number];

/** What each row is called in the tables. */
export const ROW_LABELS: Readonly<Record<RowKind, string>> = {
  baseline: 'no attack (baseline)',
  idle: 'idle pre-handshake sockets',
  'slow-hello': 'ClientHello in 1-byte records',
  plaintext: 'plaintext flood',
  handshake: 'handshake flood',
  'slowloris-pre': 'slowloris before the handshake',
  'slowloris-post': 'slowloris after the handshake',
};

/** The target with limits on: every legitimate session succeeds, p99 within this × baseline. */
export const P99_TARGET_FACTOR = 2;

/** The columns of the RESULTS.md table (docs/generate/abuse-table.ts reads them back). */
export const ABUSE_TABLE_HEADER = [
  'Attack',
  'Proxy',
  'Legit sessions',
  'Legit success %',
  'Handshake p50 ms',
  'Handshake p99 ms',
  'p99 / attack-free',
  'Proxy RSS peak MiB',
  'Proxy CPU %',
  'Log bytes',
  'Attacker conns / held max / ended by proxy',
  'Listen drops',
  'Other load on proxy CPU %',
  'Verdict',
] as const;

export interface AttackerResult {
  readonly attack: AttackKind;
  /** Connections attempted. */
  readonly connects: number;
  /** Connections the proxy accepted (TCP established). */
  readonly established: number;
  /** Connect errors (refused, no port, timeouts before TCP was up). */
  readonly connectErrors: number;
  /** Connections the proxy ended (FIN, reset or alert) before the attacker did. */
  readonly closedByProxy: number;
  /** TLS handshakes completed (handshake, slowloris-post). */
  readonly handshakes: number;
  /** The most connections open at once. */
  readonly maxOpen: number;
  readonly seconds: number;
}

export interface LegitResult {
  /** Sessions started in the measured window. */
  readonly sessions: number;
  /** Of those, sessions that got the handshake, the 101 and the announce reply in time. */
  readonly succeeded: number;
  /** Failed sessions by the step that failed (connect, handshake, upgrade, announce). */
  readonly failedAt: Readonly<Record<string, number>>;
  /** Handshake latency (connect call → secureConnect) of the window's completed handshakes, ms. */
  readonly handshakeP50Ms: number | null;
  readonly handshakeP99Ms: number | null;
  readonly handshakeMaxMs: number | null;
  /** Slots the lanes could not keep (the previous session still ran). */
  readonly late: number;
  readonly seconds: number;
}

/** PASS / FAIL against the target, or – without a baseline p99 to compare with. */
export function verdict(
  legit: Pick<LegitResult, 'sessions' | 'succeeded' | 'handshakeP99Ms'>,
  baselineP99Ms: number | null,
  isBaseline: boolean,
): 'PASS' | 'FAIL' | '–' {
  if (legit.sessions === 0 || legit.succeeded < legit.sessions) return 'FAIL';
  if (isBaseline) return 'PASS';
  if (baselineP99Ms === null || legit.handshakeP99Ms === null) return '–';
  return legit.handshakeP99Ms <= P99_TARGET_FACTOR * baselineP99Ms ? 'PASS' : 'FAIL';
}
