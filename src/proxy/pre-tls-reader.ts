/**
 * What a frontend reads of a connection before TLS starts: Hitch's PROXY header
 * (proxy-proxy), then the ClientHello's SNI name and ALPN list when they pick the
 * tls.Server (client-certificate policy), refuse the name (sni-nomatch-abort) or spot an
 * ACME tls-alpn-01 validation. The bytes read are handed back to the socket, so OpenSSL
 * sees the stream from its first byte.
 *
 * One class with named states and one method per state, fed by one loop (after ws's
 * lib/receiver.js):
 *
 *   proxy-header ──▶ client-hello ──▶ tls        (handed over; the budget runs on)
 *        │                 │      └──▶ refused    (a fatal alert, then a short linger)
 *        └─────────────────┴─────────▶ done       (failed, or closed by either side)
 *
 * One ssl-handshake-timeout runs from accept to the handshake's end, whoever reads the
 * bytes: node's own would start again from zero when TLS takes the socket.
 */
import type { Socket } from 'node:net';
import { UnhitchError } from '../errors.js';
import { type AcmeChallengeResponder, offersAcmeTls } from '../tls/acme-challenge.js';
import {
  CLIENT_HELLO_MAX_BYTES,
  ClientHelloReader,
  ILLEGAL_PARAMETER_ALERT,
  NO_APPLICATION_PROTOCOL_ALERT,
  UNRECOGNIZED_NAME_ALERT,
} from '../tls/client-hello.js';
import type { ConnectionFailureReason } from './events.js';
import { type ProxyEndpoints, ProxyHeaderReader } from './proxy-protocol.js';

/** v2 header with generous TLVs; v1 is ≤ 107. */
export const MAX_PROXY_HEADER_BYTES = 536;
/** After a fatal alert, how long a client that does not close is waited for. */
export const ALERT_LINGER_MS = 2_000;

export type PreTlsState = 'proxy-header' | 'client-hello' | 'tls' | 'refused' | 'done';

/** Where TLS goes on: the index of a tls.Server, or the ACME challenge server. */
export type TlsTarget = number | 'acme-challenge';

export interface PreTlsOptions {
  /** proxy-proxy: a PROXY header comes first. */
  readonly proxyHeader: boolean;
  /** SNI name → tls.Server index; undefined: refuse the name (sni-nomatch-abort). */
  readonly route: ((servername: string | undefined) => number | undefined) | undefined;
  readonly acmeChallenges: AcmeChallengeResponder | undefined;
  readonly handshakeTimeoutMs: number;
}

/**
 * What the reader tells its frontend; each call names the socket, so one object serves
 * every connection.
 */
export interface PreTlsHandlers {
  /**
   * The PROXY header was read; `endpoints` undefined for LOCAL/UNKNOWN (health checks).
   * false: the client is refused (a limit) and the socket destroyed: read no further.
   */
  proxyHeaderRead(raw: Socket, endpoints: ProxyEndpoints | undefined, header: Buffer): boolean;
  /** TLS takes the socket from here; the bytes read were pushed back into it. */
  handOver(raw: Socket, target: TlsTarget): void;
  /** Failed before TLS. `settled` false: an alert lingers and the socket's close settles it. */
  failed(raw: Socket, reason: ConnectionFailureReason, error: Error, settled: boolean): void;
  /** Closed from our side (drain, shutdown) while reading: no longer handshaking, no news. */
  closed(raw: Socket): void;
  /** The handshake after hand-over outlived the budget started at accept (reported once). */
  outOfBudget(raw: Socket, error: Error): void;
}

/** Where a socket's listeners find their reader (the listeners are shared functions). */
const READER = Symbol('unhitch.preTlsReader');
type ReadSocket = Socket & { [READER]: PreTlsReader | undefined };

function readerOf(socket: Socket): PreTlsReader {
  return (socket as ReadSocket)[READER] as PreTlsReader;
}

/** The reader of a socket handed over to TLS whose handshake has not ended yet. */
export function preTlsReaderOf(socket: Socket): PreTlsReader | undefined {
  return (socket as Partial<ReadSocket>)[READER];
}

export class PreTlsReader {
  #state: PreTlsState;
  #header: ProxyHeaderReader | undefined;
  /** Created when the ClientHello state is entered: only then are bytes kept. */
  #hello: ClientHelloReader | undefined;
  #receivedBytes = 0;
  readonly #budget: NodeJS.Timeout;
  #outOfBudget = false;

  constructor(
    readonly raw: Socket,
    private readonly options: PreTlsOptions,
    private readonly handlers: PreTlsHandlers,
  ) {
    this.#state = options.proxyHeader ? 'proxy-header' : 'client-hello';
    this.#header = options.proxyHeader ? new ProxyHeaderReader(MAX_PROXY_HEADER_BYTES) : undefined;
    if (!this.#peeks && !options.proxyHeader) throw new Error('nothing to read before TLS');
    this.#budget = setTimeout(budgetSpent, options.handshakeTimeoutMs, this);
    (raw as ReadSocket)[READER] = this;
    raw.on('data', onData);
    raw.on('error', onError);
    raw.on('end', onEnd);
    raw.on('close', onClose);
  }

  get state(): PreTlsState {
    return this.#state;
  }

  /** Whether the ClientHello must be read: to route by SNI, or to spot acme-tls/1. */
  get #peeks(): boolean {
    return this.options.route !== undefined || this.options.acmeChallenges !== undefined;
  }

  /** The handshake ended: stop the budget. True when it had already run out (reported). */
  handshakeEnded(): boolean {
    clearTimeout(this.#budget);
    // Let go of this reader: an established connection keeps nothing of it.
    (this.raw as ReadSocket)[READER] = undefined;
    return this.#outOfBudget;
  }

  /** The one loop: each state takes what it needs and returns the bytes left for the next. */
  onData(chunk: Buffer): void {
    this.#receivedBytes += chunk.length;
    let bytes: Buffer | undefined = chunk;
    while (bytes !== undefined) {
      switch (this.#state) {
        case 'proxy-header':
          bytes = this.#readProxyHeader(bytes);
          break;
        case 'client-hello':
          bytes = this.#readClientHello(bytes);
          break;
        default:
          return;
      }
    }
  }

  /** The PROXY header, then the ClientHello (when it is peeked at) or TLS. */
  #readProxyHeader(bytes: Buffer): Buffer | undefined {
    let parsed: ReturnType<ProxyHeaderReader['push']>;
    try {
      parsed = this.#header?.push(bytes);
    } catch (error) {
      this.#fail('proxy_header_invalid', error as Error);
      return undefined;
    }
    if (parsed === undefined) return undefined;
    this.#header = undefined;
    if (!this.handlers.proxyHeaderRead(this.raw, parsed.endpoints, parsed.header)) {
      this.#stopReading('done');
      return undefined;
    }
    if (!this.#peeks) {
      this.#handOver(0, parsed.rest);
      return undefined;
    }
    this.#state = 'client-hello';
    return parsed.rest.length > 0 ? parsed.rest : undefined;
  }

  /** The ClientHello: route it, refuse it, or leave it to OpenSSL. */
  #readClientHello(bytes: Buffer): undefined {
    this.#hello ??= new ClientHelloReader();
    const peek = this.#hello.push(bytes);
    switch (peek.kind) {
      case 'incomplete':
        return undefined;
      case 'not-client-hello':
        // OpenSSL sees it on the default server and says what it is.
        this.#handOver(0, this.#hello.received());
        return undefined;
      case 'too-large': {
        const size =
          peek.declaredBytes === undefined
            ? `still incomplete after ${this.#receivedBytes} bytes`
            : `declared at ${peek.declaredBytes} bytes`;
        const error = new UnhitchError(
          'UNHITCH_CLIENT_HELLO_TOO_LARGE',
          `ClientHello over ${CLIENT_HELLO_MAX_BYTES} bytes (${size})`,
        );
        this.#refuse('client_hello_too_large', error, ILLEGAL_PARAMETER_ALERT);
        return undefined;
      }
      case 'client-hello':
        break;
    }
    const { route, acmeChallenges } = this.options;
    if (acmeChallenges !== undefined && offersAcmeTls(peek.alpn)) {
      if (acmeChallenges.answers(peek.servername)) {
        this.#handOver('acme-challenge', this.#hello.received());
        return undefined;
      }
      // No open challenge for this name (or a name the acme block does not list): no
      // certificate is made up for it; the client hears no_application_protocol.
      const error = new UnhitchError(
        'UNHITCH_ACME_CHALLENGE_REFUSED',
        `acme-tls/1 for "${peek.servername ?? ''}", which has no open ACME challenge`,
      );
      this.#refuse('acme_challenge_refused', error, NO_APPLICATION_PROTOCOL_ALERT);
      return undefined;
    }
    let serverIndex: number | undefined;
    try {
      serverIndex = route === undefined ? 0 : route(peek.servername);
    } catch {
      serverIndex = 0; // a lookup failure keeps the default certificate, as the SNICallback does
    }
    if (serverIndex !== undefined) {
      this.#handOver(serverIndex, this.#hello.received());
      return undefined;
    }
    // sni-nomatch-abort: Hitch's servername callback fails with unrecognized_name (112).
    const error = new UnhitchError(
      'UNHITCH_SNI_NOMATCH',
      `no certificate for SNI name "${peek.servername ?? ''}"`,
    );
    this.#refuse('sni_nomatch', error, UNRECOGNIZED_NAME_ALERT);
    return undefined;
  }

  #handOver(target: TlsTarget, bytes: Buffer): void {
    this.#stopReading('tls');
    this.#hello = undefined;
    const raw = this.raw;
    raw.pause();
    if (bytes.length > 0) raw.unshift(bytes);
    this.handlers.handOver(raw, target);
  }

  /** Write a fatal alert, close, and do not wait long for a client that stays. */
  #refuse(reason: ConnectionFailureReason, error: Error, alert: Buffer): void {
    this.#stopReading('refused');
    this.#hello = undefined;
    this.handlers.failed(this.raw, reason, error, false);
    const raw = this.raw;
    raw.end(alert);
    // The client closes on the alert; one that does not is not kept waiting for.
    const linger = setTimeout(destroySocket, ALERT_LINGER_MS, raw);
    linger.unref();
    raw.once('close', () => clearTimeout(linger));
  }

  #fail(reason: ConnectionFailureReason, error: Error): void {
    this.#stopReading('done');
    this.#hello = undefined;
    this.handlers.failed(this.raw, reason, error, true);
    this.raw.destroy();
  }

  /** Stop reading before TLS; handed over to TLS, the budget keeps running. */
  #stopReading(next: 'tls' | 'refused' | 'done'): void {
    this.#state = next;
    if (next !== 'tls') {
      clearTimeout(this.#budget);
      (this.raw as ReadSocket)[READER] = undefined;
    }
    const raw = this.raw;
    raw.removeListener('data', onData);
    raw.removeListener('error', onError);
    raw.removeListener('end', onEnd);
    raw.removeListener('close', onClose);
    raw.on('error', ignoreError); // late errors of a socket we gave up on are not news
  }

  onBudgetSpent(): void {
    if (this.#state === 'tls') {
      if (this.raw.destroyed) return; // closed in the handshake without a report (drain)
      this.#outOfBudget = true;
      // As node reports its own handshake timeout.
      const error = Object.assign(new Error('TLS handshake timeout'), {
        code: 'ERR_TLS_HANDSHAKE_TIMEOUT',
      });
      this.handlers.outOfBudget(this.raw, error);
      this.raw.destroy();
      return;
    }
    if (this.#state === 'proxy-header') {
      const error = new UnhitchError(
        'UNHITCH_PROXY_HEADER_TIMEOUT',
        `no complete PROXY header in time (${this.#receivedBytes} bytes)`,
      );
      this.#fail('proxy_header_timeout', error);
    } else if (this.#state === 'client-hello') {
      this.#fail(
        'handshake_timeout',
        new UnhitchError('UNHITCH_CLIENT_HELLO_TIMEOUT', 'no ClientHello in time'),
      );
    }
  }

  onError(error: Error): void {
    // A reset before the PROXY header is whole is what a load balancer's TCP health
    // check does (HAProxy closes its checks with RST): the same stable reason as a FIN
    // there, not a warning.
    if (this.#state === 'proxy-header') {
      const message = `client reset after ${this.#receivedBytes} bytes of an incomplete PROXY header`;
      this.#fail(
        'proxy_header_incomplete',
        new UnhitchError('UNHITCH_PROXY_HEADER_INCOMPLETE', message, { cause: error }),
      );
    } else this.#fail('client_reset', error);
  }

  /** FIN before TLS could start (allowHalfOpen is off: node closes our side too). */
  onEnd(): void {
    if (this.#state === 'proxy-header') {
      const message = `client closed after ${this.#receivedBytes} bytes of an incomplete PROXY header`;
      this.#fail(
        'proxy_header_incomplete',
        new UnhitchError('UNHITCH_PROXY_HEADER_INCOMPLETE', message),
      );
      return;
    }
    // As node reports a FIN during the handshake proper ('socket hang up').
    const error = Object.assign(new Error('client closed before its ClientHello was complete'), {
      code: 'ECONNRESET',
    });
    this.#fail('client_reset', error);
  }

  /** Destroyed from our side (drain, shutdown) while reading: nothing to report. */
  onClose(): void {
    this.#stopReading('done');
    this.#hello = undefined;
    this.handlers.closed(this.raw);
  }
}

// The socket's listeners, shared by every connection (`this` is the socket).
function onData(this: Socket, chunk: Buffer): void {
  readerOf(this).onData(chunk);
}

function onError(this: Socket, error: Error): void {
  readerOf(this).onError(error);
}

function onEnd(this: Socket): void {
  readerOf(this).onEnd();
}

function onClose(this: Socket): void {
  readerOf(this).onClose();
}

function ignoreError(): void {}

function budgetSpent(reader: PreTlsReader): void {
  reader.onBudgetSpent();
}

function destroySocket(socket: Socket): void {
  socket.destroy();
}
