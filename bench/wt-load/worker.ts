/**
 * One wt-load worker thread: opens its share of WebSocket connections at the configured pace,
 * keeps one request in flight per connection (the next one leaves when the previous gets its
 * response) or, with announce_rate, sends announces at a fixed rate round-robin over the open
 * connections whatever the responses do (open loop), answers every offer it is sent, and
 * reports counter deltas to the main thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import WebSocket from 'ws';
import { type LoadConfig, targetUrl } from './config.js';
import {
  announceWithOffers,
  classifyRaw,
  fakeSdp,
  randomId,
  rawAnswerTo,
  sampleGamma,
  scrape,
} from './protocol.js';
import { type Counters, emptyCounters, type WorkerReport } from './stats.js';

export interface WorkerInput {
  readonly config: LoadConfig;
  readonly workerIndex: number;
}

const REPORT_INTERVAL_MS = 100;
const RECONNECT_DELAY_MS = 200;
/** Pool of offer ids reused round-robin: generating 10 random ids per announce would cost
 * the load generator CPU that belongs to the proxy under test. */
const OFFER_ID_POOL_SIZE = 4096;

const { config } = workerData as WorkerInput;
const url = targetUrl(config);
const torrents = config.torrents;
const infoHashes = Array.from({ length: torrents.number_of_torrents }, randomId);
const offerIdPool = Array.from({ length: OFFER_ID_POOL_SIZE }, randomId);
const offerSdp = fakeSdp('offer', torrents.sdp_bytes);
const rawAnswerSdp = JSON.stringify(fakeSdp('answer', torrents.sdp_bytes));
/** Client frames must be masked; an all-zero key is legal and lets ws skip the XOR pass. */
const zeroMask = (): void => {};
const scrapeProbability =
  torrents.weight_scrape / (torrents.weight_announce + torrents.weight_scrape);

let counters: Counters = emptyCounters();
let openConnections = 0;
let stopping = false;
/** With hold_load_until_connected, first requests wait for the main thread's 'start'. */
let loadStarted = !config.hold_load_until_connected;
let waitingForStart: (() => void)[] = [];
let offerIdCursor = 0;
const sockets = new Set<WebSocket>();
/** This worker's share of announce_rate, per second (0: closed loop). */
const announceRate = config.announce_rate / config.num_workers;
/** Open connections the open-loop pacer sends on, round-robin. */
const openPeers: { readonly socket: WebSocket; readonly peerId: string }[] = [];
let peerCursor = 0;
/** A pacer tick that comes this late sends at most this much backlog (the rest is missed). */
const PACER_TICK_MS = 5;
const PACER_MAX_CATCH_UP_SECONDS = 0.1;

function pickInfoHash(): string {
  const index =
    Math.floor(sampleGamma(torrents.torrent_gamma_shape, torrents.torrent_gamma_scale)) %
    infoHashes.length;
  return infoHashes[index] as string;
}

function nextOfferIds(): string[] {
  const ids: string[] = [];
  for (let i = 0; i < torrents.offers_per_request; i++) {
    ids.push(offerIdPool[offerIdCursor] as string);
    offerIdCursor = (offerIdCursor + 1) % offerIdPool.length;
  }
  return ids;
}

function sendRequest(socket: WebSocket, peerId: string): void {
  if (socket.readyState !== WebSocket.OPEN) return;
  const message =
    Math.random() < scrapeProbability
      ? scrape(pickInfoHash())
      : announceWithOffers(pickInfoHash(), peerId, nextOfferIds(), offerSdp);
  socket.send(message);
  counters.requestsSent++;
}

function openConnection(): void {
  if (stopping) return;
  const peerId = randomId();
  // As latin1 bytes of its UTF-8 JSON encoding, to splice into answers built from raw text.
  const rawPeerId = Buffer.from(JSON.stringify(peerId), 'utf8').toString('latin1');
  const socket = new WebSocket(url, {
    rejectUnauthorized: false,
    perMessageDeflate: false,
    skipUTF8Validation: true,
    generateMask: zeroMask,
  });
  sockets.add(socket);
  let opened = false;
  const peer = { socket, peerId };
  socket.on('open', () => {
    opened = true;
    openConnections++;
    counters.connectionsOpened++;
    if (announceRate > 0) {
      openPeers.push(peer);
      return;
    }
    if (loadStarted) sendRequest(socket, peerId);
    else waitingForStart.push(() => sendRequest(socket, peerId));
  });
  socket.on('message', (data: Buffer) => {
    // latin1: one char per byte, cheaper than UTF-8 decoding and byte-exact for splicing.
    const text = data.toString('latin1');
    const kind = classifyRaw(text);
    counters.responses[kind]++;
    if (kind === 'offer') {
      const answer = rawAnswerTo(text, rawPeerId, rawAnswerSdp);
      if (answer !== null) {
        socket.send(Buffer.from(answer, 'latin1'), { binary: false });
        counters.requestsSent++;
      }
    } else if (
      announceRate === 0 &&
      (kind === 'announce' || kind === 'scrape' || kind === 'error')
    ) {
      sendRequest(socket, peerId);
    }
  });
  socket.on('error', () => {
    // 'close' follows; counted there.
  });
  socket.on('close', () => {
    sockets.delete(socket);
    if (opened) openConnections--;
    const index = openPeers.indexOf(peer);
    if (index >= 0) openPeers.splice(index, 1);
    if (stopping) return;
    counters.connectionErrors++;
    setTimeout(openConnection, RECONNECT_DELAY_MS);
  });
}

function report(): void {
  const message: WorkerReport = { type: 'stats', delta: counters, openConnections };
  parentPort?.postMessage(message);
  counters = emptyCounters();
}

/**
 * One connection per interval, catching up when the event loop is late (it is busy with the
 * load of the connections already open), so ramp-up time does not depend on how loaded we are.
 */
function startConnections(): void {
  let created = 0;
  const startedAt = performance.now();
  const interval = Math.max(config.connection_creation_interval_ms, 0);
  const createDue = (): void => {
    if (stopping) return;
    const due =
      interval === 0
        ? config.num_connections_per_worker
        : Math.min(
            config.num_connections_per_worker,
            Math.floor((performance.now() - startedAt) / interval) + 1,
          );
    while (created < due) {
      created++;
      openConnection();
    }
    if (created < config.num_connections_per_worker) setTimeout(createDue, Math.max(interval, 1));
  };
  createDue();
}

/**
 * Open loop: every tick sends the announces due since the start, round-robin over the open
 * connections. A late tick catches up on at most PACER_MAX_CATCH_UP_SECONDS of backlog; the
 * rest is counted as missed rather than sent in a burst the proxies would see differently.
 */
function startPacer(): void {
  const startedAt = performance.now();
  let due = 0;
  const tick = (): void => {
    if (stopping) return;
    const target = Math.floor(((performance.now() - startedAt) / 1000) * announceRate);
    const backlog = target - due;
    const limit = Math.ceil(announceRate * PACER_MAX_CATCH_UP_SECONDS);
    if (backlog > limit) counters.announcesMissed += backlog - limit;
    const toSend = Math.min(backlog, limit);
    due = target;
    for (let i = 0; i < toSend; i++) {
      if (peerCursor >= openPeers.length) peerCursor = 0;
      const peer = openPeers[peerCursor++];
      if (peer === undefined) {
        counters.announcesMissed += toSend - i;
        break;
      }
      sendRequest(peer.socket, peer.peerId);
    }
    setTimeout(tick, PACER_TICK_MS);
  };
  tick();
}

const reportTimer = setInterval(report, REPORT_INTERVAL_MS);

parentPort?.on('message', (message: unknown) => {
  if (message === 'start') {
    loadStarted = true;
    if (announceRate > 0) startPacer();
    for (const sendFirst of waitingForStart) sendFirst();
    waitingForStart = [];
    return;
  }
  if (message !== 'stop') return;
  stopping = true;
  clearInterval(reportTimer);
  for (const socket of sockets) socket.terminate();
  const stopped: WorkerReport = { type: 'stopped', delta: counters };
  parentPort?.postMessage(stopped);
  counters = emptyCounters();
  parentPort?.close();
});

startConnections();
