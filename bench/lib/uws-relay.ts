/**
 * EXPERIMENT (benchmark only): a WebSocket-level relay with uWebSockets.js's C++ TLS and
 * WebSocket on the front and one plain ws:// backend connection per client. It answers "could
 * a uWS front end beat Hitch on CPU per relayed WebTorrent response?" — it is not a Hitch
 * replacement: it only carries WebSocket messages, so PROXY protocol, arbitrary TCP and
 * half-close are gone by construction.
 */
import type * as Uws from '@trufflesuite/uws-js-unofficial';
import WebSocket from 'ws';
import { loadNativeUws } from '../backends/uws-native.js';
import { type BackendLink, type BackendLinkEvents, connectRawWebSocket } from './raw-ws-client.js';

export type BackendClientKind = 'ws' | 'raw';

export interface UwsRelayOptions {
  readonly listenHost: string;
  /** 0 = ephemeral. */
  readonly listenPort: number;
  readonly backendHost: string;
  readonly backendPort: number;
  readonly certPath: string;
  readonly keyPath: string;
  readonly backendClient: BackendClientKind;
}

export interface UwsRelay {
  readonly port: number;
  close(): void;
}

/** Pause the backend when this much waits for a slow client; resume below the low mark. */
const CLIENT_HIGH_WATER_BYTES = 256 * 1024;
const CLIENT_LOW_WATER_BYTES = 64 * 1024;
/** uWS drops (send() === 2) above this; it must sit well above the high-water mark. */
const CLIENT_MAX_BACKPRESSURE_BYTES = 4 * 1024 * 1024;
/**
 * This uWS version cannot pause reading a WebSocket, so a client that outpaces the backend is
 * cut off once this much is queued towards the backend rather than buffered without bound.
 */
const BACKEND_MAX_QUEUED_BYTES = 4 * 1024 * 1024;
const CLOSE_TRY_AGAIN_LATER = 1013;
const CLOSE_GOING_AWAY = 1001;
/** Close codes that may not appear in a close frame (RFC 6455 §7.4.1). */
const RESERVED_CLOSE_CODES = new Set([1004, 1005, 1006, 1015]);

interface ClientState {
  readonly path: string;
  link: BackendLink | null;
  /** Client messages received before the backend handshake completed. */
  pending: Buffer[] | null;
  pendingBinary: boolean[] | null;
  clientClosed: boolean;
  backendPaused: boolean;
}

type ClientSocket = Uws.WebSocket<ClientState>;

export class UwsRelayError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

function sendableCloseCode(code: number): number | null {
  if (RESERVED_CLOSE_CODES.has(code) || code < 1000 || code > 4999) return null;
  return code;
}

/** The `ws` package as the backend client, adapted to BackendLink. */
function connectWsLink(url: string, events: BackendLinkEvents): BackendLink {
  const socket = new WebSocket(url, { perMessageDeflate: false });
  let closed = false;
  socket.on('open', () => events.onOpen());
  // ws emits each message from inside its socket 'data' handler; there is no chunk hook to batch.
  socket.on('message', (data: Buffer, isBinary: boolean) =>
    events.batch(() => events.onMessage(data, isBinary)),
  );
  socket.on('error', () => undefined);
  socket.on('close', (code: number) => {
    if (closed) return;
    closed = true;
    events.onClose(code);
  });
  return {
    send: (data, isBinary) => socket.send(data, { binary: isBinary }),
    get bufferedAmount() {
      return socket.bufferedAmount;
    },
    pause: () => socket.pause(),
    resume: () => socket.resume(),
    close(code) {
      if (socket.readyState === WebSocket.CONNECTING) socket.terminate();
      else socket.close(sendableCloseCode(code) ?? undefined);
    },
    destroy: () => socket.terminate(),
  };
}

function connectLink(
  options: UwsRelayOptions,
  path: string,
  events: BackendLinkEvents,
): BackendLink {
  if (options.backendClient === 'raw') {
    return connectRawWebSocket(options.backendHost, options.backendPort, path, events);
  }
  return connectWsLink(`ws://${options.backendHost}:${options.backendPort}${path}`, events);
}

function endClient(client: ClientSocket, state: ClientState, backendCode: number): void {
  if (state.clientClosed) return;
  state.clientClosed = true;
  // An abnormal backend end (1006) becomes an abrupt client end, as a byte splice would do.
  if (backendCode === 1006) client.close();
  else client.end(sendableCloseCode(backendCode) ?? 1000);
}

function flushPending(state: ClientState, link: BackendLink): void {
  const pending = state.pending ?? [];
  const binary = state.pendingBinary ?? [];
  state.pending = null;
  state.pendingBinary = null;
  pending.forEach((message, i) => {
    link.send(message, binary[i] ?? false);
  });
}

function openBackend(options: UwsRelayOptions, client: ClientSocket): void {
  const state = client.getUserData();
  const events: BackendLinkEvents = {
    onOpen: () => {
      if (state.link && !state.clientClosed) flushPending(state, state.link);
    },
    onMessage: (data, isBinary) => {
      if (state.clientClosed) return;
      if (client.send(data, isBinary) === 2) {
        endClient(client, state, CLOSE_TRY_AGAIN_LATER);
        state.link?.destroy();
        return;
      }
      if (!state.backendPaused && client.getBufferedAmount() > CLIENT_HIGH_WATER_BYTES) {
        state.backendPaused = true;
        state.link?.pause();
      }
    },
    onClose: (code) => {
      state.link = null;
      if (!state.clientClosed) client.cork(() => endClient(client, state, code));
    },
    // One cork per backend chunk: all its frames leave in one TLS record and one syscall.
    batch: (deliver) => {
      if (state.clientClosed) return;
      client.cork(deliver);
    },
  };
  state.link = connectLink(options, state.path, events);
}

function onClientMessage(client: ClientSocket, message: ArrayBuffer, isBinary: boolean): void {
  const state = client.getUserData();
  const link = state.link;
  if (!link) return;
  if (state.pending) {
    // The ArrayBuffer is neutered when this callback returns, so keep a copy.
    state.pending.push(Buffer.from(message.slice(0)));
    state.pendingBinary?.push(isBinary);
    return;
  }
  // send() frames (and, for both clients, copies) the bytes synchronously.
  link.send(new Uint8Array(message), isBinary);
  if (link.bufferedAmount > BACKEND_MAX_QUEUED_BYTES) {
    client.end(CLOSE_TRY_AGAIN_LATER);
  }
}

function onClientDrain(client: ClientSocket): void {
  const state = client.getUserData();
  if (state.backendPaused && client.getBufferedAmount() < CLIENT_LOW_WATER_BYTES) {
    state.backendPaused = false;
    state.link?.resume();
  }
}

function onClientClose(client: ClientSocket, code: number): void {
  const state = client.getUserData();
  state.clientClosed = true;
  const link = state.link;
  state.link = null;
  link?.close(sendableCloseCode(code) ?? CLOSE_GOING_AWAY);
}

export function startUwsRelay(options: UwsRelayOptions): Promise<UwsRelay> {
  // Refuses (BENCH_UWS_NATIVE_UNAVAILABLE) instead of silently running on the ws-based shim.
  const uws = loadNativeUws() as unknown as typeof Uws;
  const app = uws.SSLApp({ key_file_name: options.keyPath, cert_file_name: options.certPath });
  app.ws<ClientState>('/*', {
    compression: uws.DISABLED,
    maxPayloadLength: 1024 * 1024,
    maxBackpressure: CLIENT_MAX_BACKPRESSURE_BYTES,
    // Hitch has no idle timeout either; the tracker owns liveness.
    idleTimeout: 0,
    upgrade: (res, req, context) => {
      const query = req.getQuery();
      const state: ClientState = {
        path: query ? `${req.getUrl()}?${query}` : req.getUrl(),
        link: null,
        pending: [],
        pendingBinary: [],
        clientClosed: false,
        backendPaused: false,
      };
      res.upgrade(
        state,
        req.getHeader('sec-websocket-key'),
        req.getHeader('sec-websocket-protocol'),
        req.getHeader('sec-websocket-extensions'),
        context,
      );
    },
    open: (client) => openBackend(options, client),
    message: onClientMessage,
    drain: onClientDrain,
    close: (client, code) => onClientClose(client, code),
  });
  return new Promise((resolve, reject) => {
    app.listen(options.listenHost, options.listenPort, (listenSocket) => {
      if (listenSocket === false) {
        reject(
          new UwsRelayError(
            `cannot listen on ${options.listenHost}:${options.listenPort}`,
            'UWS_RELAY_LISTEN_FAILED',
          ),
        );
        return;
      }
      resolve({
        port: uws.us_socket_local_port(listenSocket as unknown as Uws.us_socket),
        close: () => uws.us_listen_socket_close(listenSocket),
      });
    });
  });
}
