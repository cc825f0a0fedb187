/**
 * A WebTorrent client's first message, as browsers send it to a wss:// tracker, and
 * bittorrent-tracker's server as the tests' backend.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { TestContext } from 'node:test';
import TrackerServer from 'bittorrent-tracker/server';
import WebSocket from 'ws';
import { freePort } from '../kit/ports.js';

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

/** A torrent's first announce, as a browser sends it; with one (dummy) offer unless told. */
export function announceMessage(options: { readonly offer?: boolean } = {}): string {
  const offers =
    options.offer === false
      ? []
      : [{ offer_id: randomId(), offer: { type: 'offer', sdp: 'v=0\r\n' } }];
  return JSON.stringify({
    action: 'announce',
    info_hash: randomId(),
    peer_id: randomId(),
    numwant: 1,
    uploaded: 0,
    downloaded: 0,
    left: 0,
    event: 'started',
    offers,
  });
}

export interface AnnounceOptions {
  readonly timeoutMs?: number;
  /** Trust this CA (else any certificate is accepted). */
  readonly ca?: Buffer;
  /** Connect from this loopback address. */
  readonly localAddress?: string;
  /** Include one offer (default true). */
  readonly offer?: boolean;
}

/** Announces one torrent on an open WebSocket (which stays open); resolves with the response. */
export async function announceOn(
  socket: WebSocket,
  options: Pick<AnnounceOptions, 'offer' | 'timeoutMs'> = {},
): Promise<AnnounceResponse> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  socket.send(announceMessage(options));
  const [data] = (await once(socket, 'message', { signal: AbortSignal.timeout(timeoutMs) }).catch(
    (error: Error) => {
      throw error.name === 'AbortError'
        ? new Error(`no announce response in ${timeoutMs} ms`)
        : error;
    },
  )) as [WebSocket.RawData];
  return JSON.parse(String(data)) as AnnounceResponse;
}

/** Opens a WebSocket, announces one torrent, closes it, resolves with the response. */
export async function announceOnce(
  url: string,
  options: AnnounceOptions = {},
): Promise<AnnounceResponse> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const socket = new WebSocket(url, {
    ...(options.ca === undefined ? { rejectUnauthorized: false } : { ca: options.ca }),
    ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }),
    perMessageDeflate: false,
  });
  try {
    await once(socket, 'open', { signal: AbortSignal.timeout(timeoutMs) });
    return await announceOn(socket, options);
  } catch (error) {
    throw (error as Error).name === 'AbortError'
      ? new Error(`no announce response from ${url} in ${timeoutMs} ms`)
      : error;
  } finally {
    socket.terminate();
  }
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

export interface TrackerAnnounce {
  /** The address the tracker recorded for the peer (X-Forwarded-For with trustProxy). */
  readonly ip: string;
  readonly peerId: string;
}

export interface RunningTracker {
  readonly server: TrackerServer;
  readonly port: number;
  /** Every `started` announce the tracker accepted, in order. */
  readonly started: TrackerAnnounce[];
  close(): Promise<void>;
}

/**
 * bittorrent-tracker's server, WebSocket only, on a free loopback port. `trustProxy` makes
 * it take the peer's address from the left-most X-Forwarded-For.
 */
export async function startRecordingTracker(
  options: {
    trustProxy?: boolean;
    /**
     * bittorrent-tracker's `interval`; a WebSocket peer is told to re-announce after a fifth
     * of it (default 10 min, so 2 min): a test whose first WebRTC attempt fails on a loaded
     * machine needs the next announce, with fresh offers, to come within its timeout.
     */
    intervalMs?: number;
  } = {},
): Promise<RunningTracker> {
  const server = new TrackerServer({
    ...(options.intervalMs === undefined ? {} : { interval: options.intervalMs }),
    udp: false,
    http: false,
    // Tracked, so close() can end them (bittorrent-tracker turns tracking off).
    ws: { clientTracking: true },
    stats: false,
    trustProxy: options.trustProxy ?? false,
  });
  const started: TrackerAnnounce[] = [];
  server.on('start', (_addr: string, params: { ip: string; peer_id: string }) => {
    started.push({ ip: params.ip, peerId: params.peer_id });
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    server,
    port,
    started,
    // http.Server.close waits for every connection, and upgraded ones (WebSockets of
    // peers still running) are no longer its to close: end them, so closing the tracker
    // never hangs a test's cleanup.
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of server.ws?.clients ?? []) socket.terminate();
        server.http?.closeAllConnections();
      }),
  };
}
