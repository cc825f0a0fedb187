/**
 * A deliberately minimal WebSocket CLIENT over node:net, for the uws-relay experiment: the
 * backend leg of the relay without the `ws` package's per-message machinery. It speaks just
 * enough RFC 6455 for a loopback tracker: handshake, masked client frames, and the server's
 * unmasked text/binary/close/ping/pong frames. No fragmentation, no extensions.
 */
import { createHash, randomBytes, randomFillSync } from 'node:crypto';
import { connect, type Socket } from 'node:net';

export interface BackendLinkEvents {
  onOpen(): void;
  /** `data` is only valid during the call (it may be a view of a reused chunk). */
  onMessage(data: Buffer, isBinary: boolean): void;
  /** Called once; code 1006 = closed without a close frame. */
  onClose(code: number): void;
  /** Runs `deliver` (which calls onMessage 0..n times) so the consumer can batch sends. */
  batch(deliver: () => void): void;
}

/** The relay's view of its backend connection, implemented by the raw and the `ws` clients. */
export interface BackendLink {
  send(data: Uint8Array, isBinary: boolean): void;
  /** Bytes queued towards the backend and not yet written to the kernel. */
  readonly bufferedAmount: number;
  pause(): void;
  resume(): void;
  /** Graceful: close frame with `code`, then end. */
  close(code: number): void;
  destroy(): void;
}

const WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const OPCODE_TEXT = 0x1;
const OPCODE_BINARY = 0x2;
const OPCODE_CLOSE = 0x8;
const OPCODE_PING = 0x9;
const OPCODE_PONG = 0xa;
/** Anything bigger from a tracker is a bug or an attack; refuse rather than buffer it. */
const MAX_SERVER_FRAME_BYTES = 16 * 1024 * 1024;
const MAX_HANDSHAKE_BYTES = 16 * 1024;
const CLOSE_NO_STATUS = 1005;
const CLOSE_ABNORMAL = 1006;
const CLOSE_PROTOCOL_ERROR = 1002;

/** Mask keys come from one random pool refilled in bulk: one getrandom() per 2048 frames. */
const maskPool = Buffer.alloc(8192);
let maskOffset = maskPool.length;

function nextMaskOffset(): number {
  if (maskOffset + 4 > maskPool.length) {
    randomFillSync(maskPool);
    maskOffset = 0;
  }
  const offset = maskOffset;
  maskOffset += 4;
  return offset;
}

/** One client frame (FIN set, masked as RFC 6455 §5.3 requires of clients). */
export function encodeClientFrame(opcode: number, payload: Uint8Array): Buffer {
  const length = payload.length;
  const lengthBytes = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const headerBytes = 2 + lengthBytes + 4;
  const frame = Buffer.allocUnsafe(headerBytes + length);
  frame[0] = 0x80 | opcode;
  if (lengthBytes === 0) {
    frame[1] = 0x80 | length;
  } else if (lengthBytes === 2) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeBigUInt64BE(BigInt(length), 2);
  }
  const maskStart = 2 + lengthBytes;
  maskPool.copy(frame, maskStart, nextMaskOffset(), maskOffset);
  const m0 = frame[maskStart] as number;
  const m1 = frame[maskStart + 1] as number;
  const m2 = frame[maskStart + 2] as number;
  const m3 = frame[maskStart + 3] as number;
  let i = 0;
  for (; i + 3 < length; i += 4) {
    frame[headerBytes + i] = (payload[i] as number) ^ m0;
    frame[headerBytes + i + 1] = (payload[i + 1] as number) ^ m1;
    frame[headerBytes + i + 2] = (payload[i + 2] as number) ^ m2;
    frame[headerBytes + i + 3] = (payload[i + 3] as number) ^ m3;
  }
  const masks = [m0, m1, m2, m3];
  for (; i < length; i++)
    frame[headerBytes + i] = (payload[i] as number) ^ (masks[i & 3] as number);
  return frame;
}

export interface ServerFrame {
  readonly opcode: number;
  readonly payload: Buffer;
}

export class RawWebSocketError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

/**
 * Splits `bytes` into complete unmasked, unfragmented server frames.
 * Returns the frames and the offset of the first byte of an incomplete frame.
 */
export function decodeServerFrames(bytes: Buffer): { frames: ServerFrame[]; consumed: number } {
  const frames: ServerFrame[] = [];
  let offset = 0;
  while (bytes.length - offset >= 2) {
    const b0 = bytes[offset] as number;
    const b1 = bytes[offset + 1] as number;
    if ((b0 & 0x80) === 0 || (b0 & 0x0f) === 0) {
      throw new RawWebSocketError('fragmented server frame', 'RAWWS_FRAGMENTED');
    }
    if ((b1 & 0x80) !== 0) throw new RawWebSocketError('masked server frame', 'RAWWS_MASKED');
    let length = b1 & 0x7f;
    let headerBytes = 2;
    if (length === 126) {
      if (bytes.length - offset < 4) break;
      length = bytes.readUInt16BE(offset + 2);
      headerBytes = 4;
    } else if (length === 127) {
      if (bytes.length - offset < 10) break;
      const longLength = bytes.readBigUInt64BE(offset + 2);
      if (longLength > BigInt(MAX_SERVER_FRAME_BYTES)) {
        throw new RawWebSocketError('server frame too large', 'RAWWS_FRAME_TOO_LARGE');
      }
      length = Number(longLength);
      headerBytes = 10;
    }
    if (bytes.length - offset < headerBytes + length) break;
    const start = offset + headerBytes;
    frames.push({ opcode: b0 & 0x0f, payload: bytes.subarray(start, start + length) });
    offset = start + length;
  }
  return { frames, consumed: offset };
}

/** Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 4.2.2). */
export function expectedAccept(key: string): string {
  return createHash('sha1')
    .update(key + WEBSOCKET_GUID)
    .digest('base64');
}

/** Checks a complete response head; returns null when it is a valid 101 for `key`. */
export function handshakeProblem(head: string, key: string): string | null {
  const [statusLine, ...headerLines] = head.split('\r\n');
  if (!statusLine?.startsWith('HTTP/1.1 101')) return `unexpected status: ${statusLine ?? ''}`;
  const acceptLine = headerLines.find((line) =>
    line.toLowerCase().startsWith('sec-websocket-accept:'),
  );
  const accept = acceptLine?.slice(acceptLine.indexOf(':') + 1).trim();
  return accept === expectedAccept(key) ? null : 'bad Sec-WebSocket-Accept';
}

export function connectRawWebSocket(
  host: string,
  port: number,
  path: string,
  events: BackendLinkEvents,
): BackendLink {
  const key = randomBytes(16).toString('base64');
  const socket: Socket = connect({ host, port, noDelay: true });
  let open = false;
  let closed = false;
  let closeSent = false;
  /** Bytes of an incomplete frame (or of the handshake head) carried to the next chunk. */
  let carry: Buffer | null = null;

  const finish = (code: number): void => {
    if (closed) return;
    closed = true;
    socket.destroy();
    events.onClose(code);
  };

  const sendClose = (code: number): void => {
    if (closeSent || socket.destroyed) return;
    closeSent = true;
    const body = Buffer.allocUnsafe(2);
    body.writeUInt16BE(code, 0);
    socket.end(encodeClientFrame(OPCODE_CLOSE, code === CLOSE_NO_STATUS ? Buffer.alloc(0) : body));
  };

  const deliverFrames = (bytes: Buffer): void => {
    const { frames, consumed } = decodeServerFrames(bytes);
    carry = consumed < bytes.length ? Buffer.from(bytes.subarray(consumed)) : null;
    if (carry && carry.length > MAX_SERVER_FRAME_BYTES + 10) {
      throw new RawWebSocketError('server frame too large', 'RAWWS_FRAME_TOO_LARGE');
    }
    for (const frame of frames) {
      if (closed) return;
      switch (frame.opcode) {
        case OPCODE_TEXT:
        case OPCODE_BINARY:
          events.onMessage(frame.payload, frame.opcode === OPCODE_BINARY);
          break;
        case OPCODE_PING:
          socket.write(encodeClientFrame(OPCODE_PONG, frame.payload));
          break;
        case OPCODE_PONG:
          break;
        case OPCODE_CLOSE: {
          const code = frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : CLOSE_NO_STATUS;
          sendClose(code);
          finish(code);
          return;
        }
        default:
          throw new RawWebSocketError(`opcode ${frame.opcode}`, 'RAWWS_BAD_OPCODE');
      }
    }
  };

  const onHandshakeBytes = (bytes: Buffer): void => {
    const headEnd = bytes.indexOf('\r\n\r\n');
    if (headEnd < 0) {
      if (bytes.length > MAX_HANDSHAKE_BYTES) {
        throw new RawWebSocketError('handshake too long', 'RAWWS_HANDSHAKE');
      }
      carry = Buffer.from(bytes);
      return;
    }
    const problem = handshakeProblem(bytes.subarray(0, headEnd).toString('latin1'), key);
    if (problem) throw new RawWebSocketError(problem, 'RAWWS_HANDSHAKE');
    open = true;
    carry = null;
    events.onOpen();
    const rest = bytes.subarray(headEnd + 4);
    if (rest.length > 0 && !closed) events.batch(() => deliverFrames(rest));
  };

  socket.on('connect', () => {
    socket.write(
      `GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\n` +
        `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
  });
  socket.on('data', (chunk: Buffer) => {
    const bytes = carry ? Buffer.concat([carry, chunk]) : chunk;
    try {
      if (open) events.batch(() => deliverFrames(bytes));
      else onHandshakeBytes(bytes);
    } catch {
      // Every decode error is a protocol error; the relay only needs to know it is over.
      sendClose(CLOSE_PROTOCOL_ERROR);
      finish(CLOSE_PROTOCOL_ERROR);
    }
  });
  socket.on('error', () => finish(CLOSE_ABNORMAL));
  socket.on('close', () => finish(CLOSE_ABNORMAL));

  return {
    send(data, isBinary) {
      if (!open || closeSent || socket.destroyed) return;
      socket.write(encodeClientFrame(isBinary ? OPCODE_BINARY : OPCODE_TEXT, data));
    },
    get bufferedAmount() {
      return socket.writableLength;
    },
    pause: () => socket.pause(),
    resume: () => socket.resume(),
    close(code) {
      if (closed) return;
      if (!open) {
        finish(CLOSE_ABNORMAL);
        return;
      }
      sendClose(code);
      // The server answers with its own close frame; finish() runs on it or on TCP close.
    },
    destroy: () => finish(CLOSE_ABNORMAL),
  };
}
