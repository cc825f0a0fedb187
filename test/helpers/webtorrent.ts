/**
 * A WebTorrent client's first message, as browsers send it to a wss:// tracker.
 */
import { randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';
import TrackerServer from 'bittorrent-tracker/server';
import WebSocket from 'ws';
import { freePort } from './ports.js';

/** Tracker protocol ids are 20-byte binary strings carried as latin1 JSON strings. */
export function randomId(): string {
  return randomBytes(20).toString('latin1');
}

export interface AnnounceResponse {
  readonly action: string;
  readonly interval?: number;
  readonly info_hash?: string;
  readonly complete?: number;
  readonly incomplete?: number;
  readonly 'failure reason'?: string;
}

/** Opens a WebSocket, announces one torrent with one offer, resolves with the response. */
export function announceOnce(url: string, timeoutMs = 10_000): Promise<AnnounceResponse> {
  const infoHash = randomId();
  const peerId = randomId();
  const socket = new WebSocket(url, { rejectUnauthorized: false, perMessageDeflate: false });
  return new Promise<AnnounceResponse>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.terminate();
      reject(new Error(`no announce response from ${url} in ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.once('open', () => {
      socket.send(
        JSON.stringify({
          action: 'announce',
          info_hash: infoHash,
          peer_id: peerId,
          numwant: 1,
          uploaded: 0,
          downloaded: 0,
          left: 0,
          event: 'started',
          offers: [{ offer_id: randomId(), offer: { type: 'offer', sdp: 'v=0\r\n' } }],
        }),
      );
    });
    socket.once('message', (data) => {
      clearTimeout(timer);
      socket.close();
      resolve(JSON.parse(String(data)) as AnnounceResponse);
    });
  });
}

/**
 * A real bittorrent-tracker on a free loopback port with trustProxy on (it believes the
 * left-most X-Forwarded-For), closed after the test.
 */
export async function startTracker(
  t: TestContext,
  transports: { readonly http: boolean; readonly ws: boolean },
): Promise<{ tracker: TrackerServer; port: number }> {
  const tracker = new TrackerServer({ udp: false, ...transports, stats: false, trustProxy: true });
  const port = await freePort();
  await new Promise<void>((resolve) => tracker.listen(port, '127.0.0.1', resolve));
  t.after(() => tracker.close());
  return { tracker, port };
}
