/**
 * One client from its finished TLS handshake to the close of both sockets: connect the
 * backend, write the PROXY/write-ip preamble, splice, report once.
 */
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { ProxyProtocolMode } from '../config/model.js';
import { failureLog } from '../ops/failure-log.js';
import type { BackendConnector, BackendFailure, BackendHandler } from './backend.js';
import type { ConnectionFailureReason, ProxyObserver } from './events.js';
import { ForwardedFor, forwardedHeaderLines } from './forwarded.js';
import type { AcceptedSocket } from './frontend.js';
import {
  type ClientCertificateStatus,
  encodeProxyV1,
  encodeProxyV2,
  type ProxyEndpoints,
} from './proxy-protocol.js';
import { backendRead, Splice, type SpliceEnd } from './splice.js';
import { encodeWriteIp } from './write-ip.js';

export interface ConnectionSettings {
  readonly proxyProtocol: ProxyProtocolMode;
  /** PROXY v2: PP2_TYPE_SSL (Hitch's proxy-tlv). */
  readonly proxyTlv: boolean;
  /** PROXY v2: PP2_TYPE_AUTHORITY (Hitch's proxy-authority). */
  readonly proxyAuthority: boolean;
  /** PROXY v2: the verified client certificate in TLV 0xE0 (Hitch's proxy-client-cert). */
  readonly proxyClientCert: boolean;
  readonly writeIp: boolean;
  readonly forwardedFor: boolean;
  /** With forwardedFor: how long a request head may take (ForwardedForOptions.headTimeoutMs). */
  readonly requestHeadTimeoutMs: number;
  readonly keepaliveSec: number;
}

export interface ConnectionDeps {
  readonly connector: BackendConnector;
  readonly settings: ConnectionSettings;
  readonly observer: ProxyObserver;
  readonly logger: Logger;
  /** Out of file descriptors: the owner backs off accepting and logs for all of them. */
  readonly onFdExhausted: () => void;
  /** Called once per connection, when it is over (both sockets closed). */
  readonly connectionDone: (connection: ProxiedConnection) => void;
}

/** The debug line of a client reset that lost nothing (see SpliceEnd): a normal hang-up. */
export const CLIENT_ABRUPT_END_MESSAGE = 'client reset the connection with nothing in flight';

export interface ProxiedConnection {
  /** Tear both sockets down now (forced shutdown). */
  destroy(): void;
  /** idle-timeout's sweep: true when it was quiet long enough and is being closed. */
  sweepIdle(idleTimeoutMs: number): boolean;
}

/** What goes to the backend before the client's first byte. */
export function backendPreamble(
  settings: ConnectionSettings,
  accepted: AcceptedSocket,
  client: TLSSocket,
): Buffer | undefined {
  const endpoints: ProxyEndpoints = accepted.endpoints;
  if (settings.proxyProtocol === 'v1') return encodeProxyV1(endpoints);
  if (settings.proxyProtocol === 'v2') {
    const servername = (client as TLSSocket & { servername?: string | false }).servername;
    const protocol = client.getProtocol();
    const cipher = client.getCipher();
    const certificate =
      settings.proxyTlv || settings.proxyClientCert ? clientCertificate(client) : undefined;
    return encodeProxyV2(endpoints, {
      ...(typeof client.alpnProtocol === 'string' ? { alpn: client.alpnProtocol } : {}),
      ...(settings.proxyAuthority && typeof servername === 'string' && servername.length > 0
        ? { authority: servername }
        : {}),
      ...(settings.proxyTlv && protocol && cipher
        ? {
            tls: {
              version: protocol,
              cipher: cipher.name,
              ...(certificate ? { clientCertificate: certificate.status } : {}),
            },
          }
        : {}),
      ...(settings.proxyClientCert && certificate?.status.verified
        ? { clientCertificatePem: certificate.pem() }
        : {}),
    });
  }
  if (settings.writeIp) return encodeWriteIp(endpoints.sourceAddress);
  // With forwarded-for the backend is an HTTP server told the client's address in
  // X-Forwarded-For (taken from the PROXY header); a PROXY header in front of its request
  // would get a 400, so the load balancer's header stops here.
  if (settings.forwardedFor) return undefined;
  // Hitch's proxy-proxy alone: the load balancer's header goes on to the backend as is.
  return accepted.proxyHeader;
}

/** The client certificate of a finished handshake, as PROXY v2 reports it. */
function clientCertificate(
  client: TLSSocket,
): { status: ClientCertificateStatus; pem: () => string } | undefined {
  // The session's certificate: also there when the session was resumed without it.
  const peer = client.getPeerX509Certificate();
  if (peer === undefined) return undefined;
  return {
    status: {
      onConnection: !client.isSessionReused(),
      inSession: true,
      verified: client.authorized,
    },
    pem: () => peer.toString(),
  };
}

/** The client as logs name it: built only when a line is logged (most connections never log). */
function clientLabel(accepted: AcceptedSocket): string {
  return `${accepted.endpoints.sourceAddress}:${accepted.endpoints.sourcePort}`;
}

/**
 * Ends a client chose (it sent nothing, or too slowly): on a public port these are
 * scanners and idle peers, as normal as a handshake timeout, so info like that one.
 */
const CLIENT_TIMEOUTS: ReadonlySet<ConnectionFailureReason> = new Set([
  'request_head_timeout',
  'idle_timeout',
]);

/** Counts (and logs) a connection's failure; the owner is told of fd exhaustion. */
function reportFailure(
  deps: ConnectionDeps,
  accepted: AcceptedSocket,
  reason: ConnectionFailureReason,
  error: Error | undefined,
): void {
  deps.observer.connectionFailed(reason);
  if (reason === 'fd_exhausted') deps.onFdExhausted();
  else
    failureLog(deps.logger)[CLIENT_TIMEOUTS.has(reason) ? 'info' : 'warn'](
      { reason, client: clientLabel(accepted), err: error },
      'connection failed',
    );
}

export function proxyConnection(
  client: TLSSocket,
  accepted: AcceptedSocket,
  deps: ConnectionDeps,
): ProxiedConnection {
  const { observer, logger, settings } = deps;
  const handshake = {
    resumed: client.isSessionReused(),
    protocol: client.getProtocol() ?? 'unknown',
    durationMs: performance.now() - accepted.acceptedAt,
  };
  observer.handshakeCompleted(handshake);
  if (logger.isLevelEnabled('debug'))
    logger.debug({ client: clientLabel(accepted), ...handshake }, 'handshake completed');
  // TCP_NODELAY and keepalive on the client socket were set at accept (Frontend).

  // What the backend is told about the client is worked out before it is dialled: a client
  // it cannot be said of (an address that is not an IP, a TLV over 64 KiB) is closed here
  // with a reason, instead of a throw in the connect callback that would end the worker.
  let preamble: Buffer | undefined;
  let forwardedLines: Buffer | undefined;
  try {
    preamble = backendPreamble(settings, accepted, client);
    if (settings.forwardedFor)
      forwardedLines = forwardedHeaderLines(accepted.endpoints.sourceAddress);
  } catch (error) {
    // A rare path: closures are fine here. Counted until its socket is gone
    // (close_notify + FIN, then the client's close).
    const refused: ProxiedConnection = {
      destroy: () => client.destroy(),
      sweepIdle: () => false,
    };
    client.on('error', () => {});
    client.on('close', () => {
      reportFailure(deps, accepted, 'client_info_invalid', error as Error);
      deps.connectionDone(refused);
    });
    client.destroySoon();
    return refused;
  }
  return new ProxiedPair(client, accepted, deps, preamble, forwardedLines);
}

/**
 * A client whose handshake is done and its backend, from the backend's dial to the close
 * of both sockets: one object per connection (see Splice for why).
 */
class ProxiedPair extends Splice implements ProxiedConnection, BackendHandler {
  /**
   * 'shutdown' when we tear the pair down ourselves, so the log blames the shutdown, not
   * the client; 'finished' once the end is reported.
   */
  private ending: 'shutdown' | 'finished' | undefined = undefined;
  /** The bytes the backend gets first, until they are written; then their count. */
  private preamble: Buffer | number;

  constructor(
    client: TLSSocket,
    private readonly accepted: AcceptedSocket,
    private readonly deps: ConnectionDeps,
    preamble: Buffer | undefined,
    private readonly forwardedLines: Buffer | undefined,
  ) {
    super(client, deps.connector.socket(backendRead));
    this.preamble = preamble ?? 0;
    deps.connector.connect(this.backend, this);
  }

  backendConnected(connectMs: number): void {
    const { deps, backend, preamble, forwardedLines } = this;
    deps.observer.backendConnected(connectMs);
    if (deps.settings.keepaliveSec > 0)
      backend.setKeepAlive(true, deps.settings.keepaliveSec * 1000);
    if (typeof preamble !== 'number') {
      backend.write(preamble);
      this.preamble = preamble.length;
    }
    this.startSplice(
      forwardedLines === undefined
        ? undefined
        : (sink) =>
            new ForwardedFor({
              clientAddress: forwardedLines,
              sink,
              headTimeoutMs: deps.settings.requestHeadTimeoutMs,
            }),
    );
  }

  backendFailed(failure: BackendFailure): void {
    // A clean TLS close (close_notify + FIN) rather than a reset: the client learns the
    // connection is over, not that the network broke.
    this.client.destroySoon();
    this.finish(failure.reason, failure.error);
  }

  protected clientLostEarly(error: Error | undefined): void {
    this.backend.destroy();
    if (error === undefined) {
      this.finish(undefined, undefined);
      return;
    }
    this.client.destroy();
    this.finish('client_reset', error);
  }

  protected spliceClosed({ failure, clientLeftAbruptly }: SpliceEnd): void {
    const { deps, backend } = this;
    deps.observer.connectionClosed({
      // Written at connect, so a count by now (the splice starts at connect).
      clientToBackendBytes:
        backend.bytesWritten - (typeof this.preamble === 'number' ? this.preamble : 0),
      backendToClientBytes: backend.bytesRead,
    });
    if (clientLeftAbruptly !== undefined) {
      // A normal end for WebSocket clients and load generators: counted, not warned.
      deps.observer.clientLeftAbruptly();
      deps.logger.debug(
        { client: clientLabel(this.accepted), err: clientLeftAbruptly },
        CLIENT_ABRUPT_END_MESSAGE,
      );
    }
    this.finish(failure?.reason, failure?.error);
  }

  destroy(): void {
    this.ending ??= 'shutdown';
    this.client.destroy();
    this.backend.destroy();
  }

  private finish(
    failureReason: ConnectionFailureReason | undefined,
    error: Error | undefined,
  ): void {
    if (this.ending === 'finished') return;
    const reason = this.ending === 'shutdown' ? 'shutdown' : failureReason;
    this.ending = 'finished';
    if (reason !== undefined) reportFailure(this.deps, this.accepted, reason, error);
    this.deps.connectionDone(this);
  }
}
