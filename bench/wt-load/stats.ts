/** Counters shared between wt-load's workers (deltas) and its main thread (totals). */
import { RESPONSE_KINDS, type ResponseKind } from './protocol.js';

export interface Counters {
  requestsSent: number;
  responses: Record<ResponseKind, number>;
  connectionErrors: number;
  connectionsOpened: number;
  /** Open-loop announces that were due but not sent (the worker's loop fell behind or no
   * connection was open): a fixed-rate run that misses many did not offer its rate. */
  announcesMissed: number;
}

export function emptyCounters(): Counters {
  const responses = {} as Record<ResponseKind, number>;
  for (const kind of RESPONSE_KINDS) responses[kind] = 0;
  return {
    requestsSent: 0,
    responses,
    connectionErrors: 0,
    connectionsOpened: 0,
    announcesMissed: 0,
  };
}

export function addCounters(into: Counters, delta: Counters): void {
  into.requestsSent += delta.requestsSent;
  into.connectionErrors += delta.connectionErrors;
  into.connectionsOpened += delta.connectionsOpened;
  into.announcesMissed += delta.announcesMissed;
  for (const kind of RESPONSE_KINDS) into.responses[kind] += delta.responses[kind];
}

export function subtractCounters(later: Counters, earlier: Counters): Counters {
  const result = emptyCounters();
  result.requestsSent = later.requestsSent - earlier.requestsSent;
  result.connectionErrors = later.connectionErrors - earlier.connectionErrors;
  result.connectionsOpened = later.connectionsOpened - earlier.connectionsOpened;
  result.announcesMissed = later.announcesMissed - earlier.announcesMissed;
  for (const kind of RESPONSE_KINDS) {
    result.responses[kind] = later.responses[kind] - earlier.responses[kind];
  }
  return result;
}

export function cloneCounters(counters: Counters): Counters {
  return { ...counters, responses: { ...counters.responses } };
}

export function totalResponses(counters: Counters): number {
  let total = 0;
  for (const kind of RESPONSE_KINDS) total += counters.responses[kind];
  return total;
}

/** Messages a worker posts to the main thread. */
export type WorkerReport =
  | { readonly type: 'stats'; readonly delta: Counters; readonly openConnections: number }
  | { readonly type: 'stopped'; readonly delta: Counters };
