/**
 * The WebTorrent tracker messages wt-load sends and how it classifies what it receives.
 * Ids are 20-byte binary strings (latin1), as browsers send them.
 */
import { randomBytes } from 'node:crypto';

export type ResponseKind = 'announce' | 'offer' | 'answer' | 'scrape' | 'error' | 'other';
export const RESPONSE_KINDS: readonly ResponseKind[] = [
  'announce',
  'offer',
  'answer',
  'scrape',
  'error',
  'other',
];

export function randomId(): string {
  return randomBytes(20).toString('latin1');
}

export interface InboundMessage {
  readonly action?: unknown;
  readonly offer?: unknown;
  readonly answer?: unknown;
  readonly offer_id?: unknown;
  readonly peer_id?: unknown;
  readonly info_hash?: unknown;
  readonly 'failure reason'?: unknown;
}

export function classify(message: InboundMessage): ResponseKind {
  if (message['failure reason'] !== undefined) return 'error';
  if (message.offer !== undefined) return 'offer';
  if (message.answer !== undefined) return 'answer';
  if (message.action === 'announce') return 'announce';
  if (message.action === 'scrape') return 'scrape';
  return 'other';
}

/** An SDP-looking string of the given length (content is irrelevant to trackers). */
export function fakeSdp(type: 'offer' | 'answer', bytes: number): string {
  const head = `v=0\r\no=- ${type} 2 IN IP4 127.0.0.1\r\n`;
  return (head + 'a=x'.repeat(Math.ceil(bytes / 3))).slice(0, Math.max(bytes, 1));
}

export function announceWithOffers(
  infoHash: string,
  peerId: string,
  offerIds: readonly string[],
  sdp: string,
): string {
  return JSON.stringify({
    action: 'announce',
    info_hash: infoHash,
    peer_id: peerId,
    numwant: offerIds.length,
    uploaded: 0,
    downloaded: 0,
    left: 0,
    event: 'started',
    offers: offerIds.map((offerId) => ({ offer_id: offerId, offer: { type: 'offer', sdp } })),
  });
}

/** A tracker's answer to an announce: action announce and no failure reason. */
export function isAnnounceAnswer(payload: Buffer): boolean {
  try {
    const message = JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
    return message.action === 'announce' && message['failure reason'] === undefined;
  } catch {
    return false;
  }
}

export function answerTo(offer: InboundMessage, peerId: string, sdp: string): string {
  return JSON.stringify({
    action: 'announce',
    info_hash: offer.info_hash,
    peer_id: peerId,
    to_peer_id: offer.peer_id,
    offer_id: offer.offer_id,
    answer: { type: 'answer', sdp },
  });
}

export function scrape(infoHash: string): string {
  return JSON.stringify({ action: 'scrape', info_hash: infoHash });
}

/**
 * Gamma(shape, scale) sample (Marsaglia–Tsang; shape < 1 via the u^(1/shape) boost), used
 * like aquatic_ws_load_test to make a few torrents popular and most rare.
 */
export function sampleGamma(
  shape: number,
  scale: number,
  random: () => number = Math.random,
): number {
  if (shape < 1) {
    return sampleGamma(shape + 1, scale, random) * random() ** (1 / shape);
  }
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (let attempt = 0; attempt < 1000; attempt++) {
    let x: number;
    let v: number;
    do {
      // Box–Muller standard normal
      x = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = random();
    if (u < 1 - 0.0331 * x ** 4 || Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) {
      return d * v * scale;
    }
  }
  return d * scale;
}

/**
 * The raw JSON token (quotes and escapes kept) of a top-level string field, or null.
 * Lets wt-load answer an offer by copying ids byte for byte instead of a JSON.parse of the
 * whole SDP-carrying message and a JSON.stringify back: the load generator has to be cheaper
 * per message than the proxy it measures. `"key":` cannot occur unescaped inside a string.
 */
export function rawStringField(json: string, key: string): string | null {
  const marker = `"${key}":`;
  let index = json.indexOf(marker);
  if (index < 0) return null;
  index += marker.length;
  while (json.charCodeAt(index) === 32) index++;
  if (json.charCodeAt(index) !== 34) return null; // not a string value
  for (let end = index + 1; end < json.length; end++) {
    const code = json.charCodeAt(end);
    if (code === 92)
      end++; // backslash: skip the escaped character
    else if (code === 34) return json.slice(index, end + 1);
  }
  return null;
}

/** Classification on the raw text, same rules as `classify`. */
export function classifyRaw(json: string): ResponseKind {
  if (json.includes('"failure reason":')) return 'error';
  if (json.includes('"offer":')) return 'offer';
  if (json.includes('"answer":')) return 'answer';
  if (json.includes('"action":"announce"') || json.includes('"action": "announce"'))
    return 'announce';
  if (json.includes('"action":"scrape"') || json.includes('"action": "scrape"')) return 'scrape';
  return 'other';
}

/**
 * An answer built from an offer's raw text, or null when the offer lacks an id. The text is
 * latin1-decoded bytes, so copied tokens stay valid UTF-8 when re-encoded as latin1.
 */
export function rawAnswerTo(
  offerJson: string,
  rawPeerId: string,
  rawAnswerSdp: string,
): string | null {
  const infoHash = rawStringField(offerJson, 'info_hash');
  const fromPeer = rawStringField(offerJson, 'peer_id');
  const offerId = rawStringField(offerJson, 'offer_id');
  if (infoHash === null || fromPeer === null || offerId === null) return null;
  return `{"action":"announce","info_hash":${infoHash},"peer_id":${rawPeerId},"to_peer_id":${fromPeer},"offer_id":${offerId},"answer":{"type":"answer","sdp":${rawAnswerSdp}}}`;
}
