/**
 * What the data plane reports about connections, and nothing more. Metrics and cluster
 * code implement `ProxyObserver`; the data plane never imports them.
 */

/** Why a connection ended badly. Stable strings: they appear in logs and metric labels. */
export type ConnectionFailureReason =
  | 'handshake_timeout' // ssl-handshake-timeout elapsed before the TLS handshake finished
  | 'handshake_error' // TLS alert, bad ClientHello, protocol/cipher mismatch
  | 'not_tls' // plaintext (e.g. HTTP) sent to the TLS port
  | 'sni_nomatch' // sni-nomatch-abort and no certificate for the name
  | 'acme_challenge_refused' // acme-tls/1 offered for a name with no open ACME challenge
  | 'client_hello_too_large' // a peeked ClientHello over 16 KiB (illegal_parameter sent)
  | 'client_cert_missing' // client-verify = required and the client sent no certificate
  | 'client_cert_rejected' // a client certificate that does not verify against client-verify-ca
  | 'proxy_header_invalid' // proxy-proxy: malformed or missing PROXY header
  | 'proxy_header_timeout' // proxy-proxy: header not received in time
  | 'proxy_header_incomplete' // proxy-proxy: client closed (FIN) before its header was complete
  | 'backend_connect_timeout' // backend-connect-timeout elapsed
  | 'backend_refused' // ECONNREFUSED / ENOENT on the backend
  | 'backend_error' // any other backend socket error (incl. reset mid-stream)
  | 'backend_source_exhausted' // EADDRNOTAVAIL: no local port left towards the backend
  | 'fd_exhausted' // EMFILE/ENFILE: this process is out of file descriptors
  | 'request_head_too_large' // forwarded-for: request head over the limit (431 sent)
  | 'request_invalid' // forwarded-for: not a well-formed HTTP/1.x request (400 sent)
  | 'request_head_timeout' // forwarded-for: no complete request head within request-head-timeout (408 sent)
  | 'idle_timeout' // idle-timeout: no byte either way for that long (closed like a backend close)
  | 'client_info_invalid' // what the backend is told of the client cannot be written (not an IP, TLV too long)
  | 'client_reset' // client socket error mid-stream (ECONNRESET, EPIPE)
  | 'shutdown'; // closed by drain/forced shutdown

/**
 * Why a connection was closed at accept by a limit, before any TLS work. Stable strings:
 * they appear in logs and metric labels.
 */
export type RefusalReason =
  | 'per_ip_max_connections' // per-ip-max-connections: the client has that many open already
  | 'per_ip_rate' // per-ip-connection-rate: the client's bucket is empty
  | 'denied' // deny-file lists the address
  | 'repeat_offender'; // deny-repeat-offenders: banned for failing too often

/** Why a worker stopped accepting for a while. Stable strings: metric labels. */
export type AcceptPauseReason = 'max_handshakes'; // max-handshakes in progress (handshake-limit.ts)

export interface HandshakeInfo {
  readonly resumed: boolean;
  /** Negotiated protocol, e.g. 'TLSv1.3'. */
  readonly protocol: string;
  readonly durationMs: number;
}

export interface ConnectionTotals {
  /** Decrypted bytes read from the client and written to the backend. */
  readonly clientToBackendBytes: number;
  /** Bytes read from the backend and written to the client. */
  readonly backendToClientBytes: number;
}

export interface ProxyObserver {
  connectionAccepted(): void;
  handshakeCompleted(info: HandshakeInfo): void;
  backendConnected(durationMs: number): void;
  connectionFailed(reason: ConnectionFailureReason): void;
  /** Closed at accept by a limit (never counted as accepted, failed or closed as well). */
  connectionRefused(reason: RefusalReason): void;
  connectionClosed(totals: ConnectionTotals): void;
  /**
   * The client reset (ECONNRESET/EPIPE) after the splice with nothing in flight either
   * way: how WebSocket clients and load generators hang up. Not a failure.
   */
  clientLeftAbruptly(): void;
  /** The worker stopped accepting (clients wait in the listen backlog). */
  acceptPaused(reason: AcceptPauseReason): void;
  /** ... and accepts again after `pausedMs`. */
  acceptResumed(reason: AcceptPauseReason, pausedMs: number): void;
}

export const NOOP_OBSERVER: ProxyObserver = Object.freeze({
  connectionAccepted() {},
  handshakeCompleted() {},
  backendConnected() {},
  connectionFailed() {},
  connectionRefused() {},
  connectionClosed() {},
  clientLeftAbruptly() {},
  acceptPaused() {},
  acceptResumed() {},
});
