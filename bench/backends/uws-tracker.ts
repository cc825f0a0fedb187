#!/usr/bin/env node
/**
 * A minimal WebTorrent tracker stand-in on native uWebSockets.js: a FAST backend, so the proxy
 * in front of it is the bottleneck. Enough protocol for wt-load: announce → reply with interval
 * and relay each offer to a different peer of the swarm; answer → relay to to_peer_id;
 * scrape → empty-ish reply. Usage: node uws-tracker.js PORT
 */
import { loadNativeUws, UwsUnavailableError, type UwsWebSocket } from './uws-native.js';

interface PeerData {
  peerId: string | null;
  /** Swarms this socket announced in, to leave them on close. */
  readonly infoHashes: Set<string>;
}

interface TrackerMessage {
  readonly action?: unknown;
  readonly info_hash?: unknown;
  readonly peer_id?: unknown;
  readonly to_peer_id?: unknown;
  readonly offer_id?: unknown;
  readonly answer?: unknown;
  readonly offers?: unknown;
}

interface Offer {
  readonly offer?: unknown;
  readonly offer_id?: unknown;
}

const ANNOUNCE_INTERVAL_SECONDS = 120;
const MAX_OFFERS = 20;

type Socket = UwsWebSocket<PeerData>;
/** info_hash → (peer_id → socket), insertion-ordered for cheap rotation. */
const swarms = new Map<string, Map<string, Socket>>();

function joinSwarm(socket: Socket, infoHash: string, peerId: string): Map<string, Socket> {
  let swarm = swarms.get(infoHash);
  if (!swarm) {
    swarm = new Map();
    swarms.set(infoHash, swarm);
  }
  swarm.set(peerId, socket);
  socket.getUserData().infoHashes.add(infoHash);
  return swarm;
}

function relayOffers(swarm: Map<string, Socket>, message: TrackerMessage, offers: Offer[]): void {
  let index = 0;
  for (const [peerId, peer] of swarm) {
    if (index >= offers.length) break;
    if (peerId === message.peer_id) continue;
    const offer = offers[index++] as Offer;
    peer.send(
      JSON.stringify({
        action: 'announce',
        offer: offer.offer,
        offer_id: offer.offer_id,
        peer_id: message.peer_id,
        info_hash: message.info_hash,
      }),
    );
  }
}

function onMessage(socket: Socket, raw: ArrayBuffer): void {
  let message: TrackerMessage;
  try {
    message = JSON.parse(Buffer.from(raw).toString('utf8')) as TrackerMessage;
  } catch {
    socket.end(1003);
    return;
  }
  const infoHash = message.info_hash;
  if (message.action === 'scrape') {
    socket.send(JSON.stringify({ action: 'scrape', files: {} }));
    return;
  }
  if (
    message.action !== 'announce' ||
    typeof infoHash !== 'string' ||
    typeof message.peer_id !== 'string'
  ) {
    socket.send(JSON.stringify({ action: 'announce', 'failure reason': 'invalid request' }));
    return;
  }
  socket.getUserData().peerId = message.peer_id;
  const swarm = joinSwarm(socket, infoHash, message.peer_id);
  if (message.answer !== undefined) {
    // Answers get no reply of their own, as in bittorrent-tracker.
    const target =
      typeof message.to_peer_id === 'string' ? swarm.get(message.to_peer_id) : undefined;
    target?.send(
      JSON.stringify({
        action: 'announce',
        answer: message.answer,
        offer_id: message.offer_id,
        peer_id: message.peer_id,
        info_hash: infoHash,
      }),
    );
    return;
  }
  socket.send(
    JSON.stringify({
      action: 'announce',
      interval: ANNOUNCE_INTERVAL_SECONDS,
      info_hash: infoHash,
      complete: swarm.size,
      incomplete: 0,
    }),
  );
  if (Array.isArray(message.offers)) {
    relayOffers(swarm, message, (message.offers as Offer[]).slice(0, MAX_OFFERS));
  }
  // Move the announcer to the end so offers rotate through the swarm.
  swarm.delete(message.peer_id);
  swarm.set(message.peer_id, socket);
}

function onClose(socket: Socket): void {
  const data = socket.getUserData();
  if (data.peerId === null) return;
  for (const infoHash of data.infoHashes) {
    const swarm = swarms.get(infoHash);
    if (swarm?.get(data.peerId) === socket) swarm.delete(data.peerId);
    if (swarm?.size === 0) swarms.delete(infoHash);
  }
}

function main(): void {
  const port = Number(process.argv[2] ?? 0);
  let uws: ReturnType<typeof loadNativeUws>;
  try {
    uws = loadNativeUws();
  } catch (err) {
    if (err instanceof UwsUnavailableError) {
      process.stderr.write(`uws-tracker: ${err.message} [${err.code}]\n`);
      process.exit(3);
    }
    throw err;
  }
  uws
    .App()
    .ws<PeerData>('/*', {
      maxPayloadLength: 64 * 1024,
      idleTimeout: 0,
      maxBackpressure: 4 * 1024 * 1024,
      open: (socket) => {
        const data = socket.getUserData();
        data.peerId = null;
        (data as { infoHashes: Set<string> }).infoHashes = new Set();
      },
      message: (socket, raw) => onMessage(socket, raw),
      close: (socket) => onClose(socket),
    })
    .listen('127.0.0.1', port, (listenSocket) => {
      if (!listenSocket) {
        process.stderr.write(`uws-tracker: cannot listen on 127.0.0.1:${port}\n`);
        process.exit(1);
      }
      process.stdout.write(`uws-tracker listening on ws://127.0.0.1:${port}\n`);
    });
  process.on('SIGTERM', () => process.exit(0));
}

main();
