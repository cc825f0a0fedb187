/**
 * One client from its finished TLS handshake to the close of both sockets: connect the
 * backend, write the PROXY/write-ip preamble, splice, report once.
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { ProxyProtocolMode } from '../config/model.js';
import type { BackendConnector, BackendFailure } from './backend.js';
import type { ConnectionFailureReason, ProxyObserver } from './events.js';
import { ForwardedFor, forwardedHeaderLines } from './forwarded.js';
import type { AcceptedSocket } from './frontend.js';
import {
  type ClientCertificateStatus,
  encodeProxyV1,
  encodeProxyV2,
  type ProxyEndpoints,
} from './proxy-protocol.js';
import { BackendToClient, splice } from './splice.js';
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
  readonly keepaliveSec: number;
}

export interface ConnectionDeps {
  readonly connector: BackendConnector;
  readonly settings: ConnectionSettings;
  readonly observer: ProxyObserver;
  readonly logger: Logger;
  /** Out of file descriptors: the owner backs off accepting and logs for all of them. */
  readonly onFdExhausted: () => void;
}

/** The debug line of a client reset that lost nothing (see SpliceEnd): a normal hang-up. */
export const CLIENT_ABRUPT_END_MESSAGE = 'client reset the connection with nothing in flight';

export interface ProxiedConnection {
  /** Tear both sockets down now (forced shutdown). */
  destroy(): void;
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

export function proxyConnection(
  client: TLSSocket,
  accepted: AcceptedSocket,
  deps: ConnectionDeps,
  onDone: () => void,
): ProxiedConnection {
  const { observer, logger, settings } = deps;
  // Built only when a line is logged: most connections never log.
  const clientLabel = (): string =>
    `${accepted.endpoints.sourceAddress}:${accepted.endpoints.sourcePort}`;
  let finished = false;
  // Set when we tear the pair down ourselves, so the log blames the shutdown, not the client.
  let forcedReason: ConnectionFailureReason | undefined;
  const finish = (
    failureReason: ConnectionFailureReason | undefined,
    error: Error | undefined,
  ): void => {
    if (finished) return;
    finished = true;
    const reason = forcedReason ?? failureReason;
    if (reason === 'fd_exhausted') {
      observer.connectionFailed(reason);
      deps.onFdExhausted();
    } else if (reason !== undefined) {
      observer.connectionFailed(reason);
      logger.warn(
        {
          reason,
          client: clientLabel(),
          err: error,
        },
        'connection failed',
      );
    }
    onDone();
  };

  const handshake = {
    resumed: client.isSessionReused(),
    protocol: client.getProtocol() ?? 'unknown',
    durationMs: performance.now() - accepted.acceptedAt,
  };
  observer.handshakeCompleted(handshake);
  if (logger.isLevelEnabled('debug'))
    logger.debug({ client: clientLabel(), ...handshake }, 'handshake completed');
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
    // Counted until its socket is gone (close_notify + FIN, then the client's close).
    client.on('error', () => {});
    client.on('close', () => finish('client_info_invalid', error as Error));
    client.destroySoon();
    return { destroy: () => client.destroy() };
  }

  // Until the splice owns the sockets, the client side is watched here.
  const earlyError = (error: Error): void => {
    backend.destroy();
    client.destroy();
    finish('client_reset', error);
  };
  const earlyClose = (): void => {
    backend.destroy();
    finish(undefined, undefined);
  };
  client.on('error', earlyError);
  client.on('close', earlyClose); // emitted once: on() spares once()'s wrapper

  const connectStarted = performance.now();
  const backendToClient = new BackendToClient();
  const backend: Socket = deps.connector.connect(
    (socket) => {
      client.removeListener('error', earlyError);
      client.removeListener('close', earlyClose);
      observer.backendConnected(performance.now() - connectStarted);
      if (settings.keepaliveSec > 0) socket.setKeepAlive(true, settings.keepaliveSec * 1000);
      if (preamble !== undefined) socket.write(preamble);
      const preambleBytes = preamble?.length ?? 0;
      splice(client, socket, backendToClient, {
        ...(forwardedLines === undefined
          ? {}
          : { clientFilter: (sink) => new ForwardedFor({ clientAddress: forwardedLines, sink }) }),
        onClosed: ({ failure, clientLeftAbruptly }) => {
          observer.connectionClosed({
            clientToBackendBytes: socket.bytesWritten - preambleBytes,
            backendToClientBytes: socket.bytesRead,
          });
          if (clientLeftAbruptly !== undefined) {
            // A normal end for WebSocket clients and load generators: counted, not warned.
            observer.clientLeftAbruptly();
            logger.debug(
              { client: clientLabel(), err: clientLeftAbruptly },
              CLIENT_ABRUPT_END_MESSAGE,
            );
          }
          finish(failure?.reason, failure?.error);
        },
      });
    },
    (failure: BackendFailure) => {
      client.removeListener('close', earlyClose);
      // A clean TLS close (close_notify + FIN) rather than a reset: the client learns
      // the connection is over, not that the network broke.
      client.destroySoon();
      finish(failure.reason, failure.error);
    },
    backendToClient.onRead,
  );

  return {
    destroy() {
      forcedReason = 'shutdown';
      client.destroy();
      backend.destroy();
    },
  };
}
