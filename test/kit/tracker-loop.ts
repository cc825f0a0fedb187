/**
 * A wt-load-like WebSocket loop against a tracker (connect, announce with offers, read the
 * answer, close, again): bench/soak.ts runs it for minutes, the soak test briefly.
 */
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';

export interface LoopTotals {
  /** Announce responses received. */
  announces: number;
  /** WebSocket sessions opened and closed. */
  sessions: number;
  /** Sessions that ended in an error or timeout instead of a response. */
  errors: number;
}

const binaryId = () => randomBytes(20).toString('latin1');

/** One session: open, announce with `offers` offers, wait for the response, close. */
function announceSession(url: string, offers: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolveSession) => {
    const socket = new WebSocket(url, { rejectUnauthorized: false, perMessageDeflate: false });
    let settled = false;
    const settle = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (ok) socket.close();
      else socket.terminate();
      resolveSession(ok);
    };
    const timer = setTimeout(() => settle(false), timeoutMs);
    socket.on('error', () => settle(false));
    socket.once('open', () => {
      socket.send(
        JSON.stringify({
          action: 'announce',
          info_hash: binaryId(),
          peer_id: binaryId(),
          numwant: offers,
          uploaded: 0,
          downloaded: 0,
          left: 0,
          event: 'started',
          offers: Array.from({ length: offers }, () => ({
            offer_id: binaryId(),
            offer: { type: 'offer', sdp: `v=0\r\n${'a=x'.repeat(100)}` },
          })),
        }),
      );
    });
    socket.once('message', (data) => {
      const text = String(data);
      settle(text.includes('"action":"announce"') && !text.includes('failure reason'));
    });
  });
}

/** `concurrency` sessions back to back until `shouldStop()`; counts into `totals`. */
export async function trackerLoop(
  url: string,
  concurrency: number,
  shouldStop: () => boolean,
  totals: LoopTotals,
): Promise<void> {
  const lane = async (): Promise<void> => {
    while (!shouldStop()) {
      const ok = await announceSession(url, 2, 5_000);
      totals.sessions += 1;
      if (ok) totals.announces += 1;
      else totals.errors += 1;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
}
