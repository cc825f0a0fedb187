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
