/**
 * The typed configuration model: the single source of truth every other module reads.
 *
 * Both front ends (hitch.conf and native TOML) and the command line produce a
 * `ProxyConfig`; nothing after `resolveConfig()` looks at raw option text again.
 */

/** TLS protocol names as Hitch spells them in `tls-protos`. */
export type TlsProtocolName = 'SSLv3' | 'TLSv1.0' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';

/** A TCP endpoint. `host` undefined means every address (Hitch's `[*]`). */
export interface TcpAddress {
  readonly kind: 'tcp';
  readonly host: string | undefined;
  readonly port: number;
}

/** A unix domain socket path (backend only). */
export interface UnixAddress {
  readonly kind: 'unix';
  readonly path: string;
}

export type BackendAddress = TcpAddress | UnixAddress;

/** deny-repeat-offenders: `failures` within `windowMs` bans the client for `banMs`. */
export interface RepeatOffenderPolicy {
  readonly failures: number;
  readonly windowMs: number;
  readonly banMs: number;
}

/**
 * One certificate. With `privateKeyPath` undefined, `certPath` holds key and chain
 * together (Hitch's combined PEM).
 */
export interface PemFileConfig {
  readonly certPath: string;
  readonly privateKeyPath: string | undefined;
  readonly ocspResponsePath: string | undefined;
  /** Hitch 1.8 pem-file block: overrides its frontend's (or the global) client-verify. */
  readonly clientVerify?: ClientVerifyMode | undefined;
  /** Hitch 1.8 pem-file block: overrides the CA bundle that checks client certificates. */
  readonly clientVerifyCa?: string | undefined;
  /** pem-file block: overrides the global ocsp-verify-staple for this certificate. */
  readonly ocspVerifyStaple?: boolean | undefined;
}

/**
 * Hitch's client-verify: `none` asks for no certificate; `optional` asks and accepts
 * none, but a certificate that does not verify fails the handshake; `required` fails the
 * handshake without a verified certificate.
 */
export type ClientVerifyMode = 'none' | 'optional' | 'required';

/** TLS settings that may be set globally and overridden per frontend. */
export interface TlsSettings {
  readonly tlsProtos: readonly TlsProtocolName[];
  /** OpenSSL cipher list for TLS ≤ 1.2. */
  readonly ciphers: string;
  /** OpenSSL TLS 1.3 ciphersuites. */
  readonly ciphersuites: string;
  readonly preferServerCiphers: boolean;
  /** Abort the handshake when SNI names no certificate we hold. */
  readonly sniNomatchAbort: boolean;
  /** Client certificates for this scope's own pem-files (Hitch 1.6 client-verify). */
  readonly clientVerify: ClientVerifyMode;
  /** PEM bundle of the CAs client certificates must chain to (client-verify-ca). */
  readonly clientVerifyCa: string | undefined;
}

export interface FrontendConfig extends TlsSettings {
  readonly address: TcpAddress;
  /** Certificates bound to this frontend only (tried before the global ones). */
  readonly pemFiles: readonly PemFileConfig[];
  /** Also offer the global pem-files on this frontend when it has its own. */
  readonly matchGlobalCerts: boolean;
}

export type ProxyProtocolMode = 'off' | 'v1' | 'v2';

/** How the CA checks that we control a name (RFC 8555 8.3, RFC 8737). */
export type AcmeChallengeType = 'tls-alpn-01' | 'http-01';

/** unhitch extension: certificates obtained and renewed from an ACME CA by the primary. */
export interface AcmeConfig {
  /** The CA's directory URL. */
  readonly directoryUrl: string;
  /** Account contact URLs, e.g. mailto:ops@example.com. */
  readonly contact: readonly string[];
  /** Lower-case DNS names, all in one certificate; the first names the stored file. */
  readonly domains: readonly string[];
  /** Account key and obtained certificates live here (created 0700, files 0600). */
  readonly stateDir: string;
  readonly challenge: AcmeChallengeType;
  /** http-01: the plain-HTTP listener the primary answers challenges on. */
  readonly httpListen: TcpAddress | undefined;
  /** First retry after a failed order, in seconds; doubles per failure up to an hour. */
  readonly retrySec: number;
}

/** Hitch's syslog-facility names (configuration.c). */
export const SYSLOG_FACILITIES = [
  'auth',
  'authpriv',
  'cron',
  'daemon',
  'ftp',
  'local0',
  'local1',
  'local2',
  'local3',
  'local4',
  'local5',
  'local6',
  'local7',
  'lpr',
  'mail',
  'news',
  'uucp',
] as const;
export type SyslogFacility = (typeof SYSLOG_FACILITIES)[number];

export type LogLevelName = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/** How log lines look: `auto` = one readable line each on a terminal, JSON anywhere else. */
export type LogFormat = 'auto' | 'json' | 'pretty';

export interface ProxyConfig {
  /** Where the config came from, for messages ("hitch-compat.conf", "<command line>"). */
  readonly source: string;
  readonly frontends: readonly FrontendConfig[];
  readonly backend: BackendAddress;
  /** Global certificates; the last one is the default (Hitch semantics). */
  readonly pemFiles: readonly PemFileConfig[];
  /** Hitch's pem-dir: every (matching) file in it is a global certificate, read at each load. */
  readonly pemDir: string | undefined;
  /** Hitch's pem-dir-glob: which file names in pem-dir count; undefined = all. */
  readonly pemDirGlob: string | undefined;
  /** OCSP responses fetched for stapling are cached here; undefined = no fetching. */
  readonly ocspDir: string | undefined;
  readonly ocspConnectTimeoutMs: number;
  readonly ocspResponseTimeoutMs: number;
  /** Refresh period for a response that carries no nextUpdate. */
  readonly ocspRefreshIntervalMs: number;
  /** Check a response's signature and signer chain (CA store: SSL_CERT_FILE) before stapling. */
  readonly ocspVerifyStaple: boolean;
  readonly tls: TlsSettings;
  /**
   * Key-exchange groups (OpenSSL list syntax, Hitch's `ecdh-curve`), or "auto" for
   * OpenSSL's own default list.
   */
  readonly ecdhCurve: string;
  /** ALPN protocols offered, in preference order; empty = no ALPN. */
  readonly alpnProtos: readonly string[];

  // Data plane
  readonly backendConnectTimeoutMs: number;
  /** Hitch's backend-refresh: re-resolve a backend given by name every N seconds; 0 = never. */
  readonly backendRefreshSec: number;
  readonly sslHandshakeTimeoutMs: number;
  readonly proxyProtocol: ProxyProtocolMode;
  /** Hitch's write-ip: 4/16 raw address bytes before the stream. */
  readonly writeIp: boolean;
  /** PROXY v2: the PP2_TYPE_SSL TLV (version, cipher, client certificate result). */
  readonly proxyTlv: boolean;
  /** PROXY v2: the PP2_TYPE_AUTHORITY TLV (the client's SNI name). */
  readonly proxyAuthority: boolean;
  /** PROXY v2: the verified client certificate, PEM, in TLV 0xE0 (Hitch 1.7). */
  readonly proxyClientCert: boolean;
  /** Read a PROXY v1/v2 header from the client before the TLS handshake. */
  readonly proxyProxy: boolean;
  /** unhitch extension: X-Forwarded-For/-Proto on every HTTP/1.x request until an upgrade. */
  readonly forwardedFor: boolean;
  /**
   * unhitch extension, with forwardedFor only: a request head must be complete this long
   * after the backend connection is up (the first head) or after its own first byte (the
   * next ones), else 408 and close.
   */
  readonly requestHeadTimeoutMs: number;
  /** unhitch extension: close a connection that carried no byte either way this long; 0 = never. */
  readonly idleTimeoutMs: number;
  /** unhitch extension: handshakes in progress per worker before it pauses accepting; 0 = no limit. */
  readonly maxHandshakes: number;
  /** unhitch extension: local source addresses for backend connections (round robin). */
  readonly backendSourceAddresses: readonly string[];
  readonly backlog: number;
  /** TCP keepalive idle time in seconds; 0 = off. */
  readonly keepaliveSec: number;
  readonly recvBufferBytes: number | undefined;
  readonly sendBufferBytes: number | undefined;
  readonly tcpFastOpen: boolean;

  // Per-client limits (unhitch extensions, issue 20), checked at accept, per worker
  /** Concurrent connections per client address; 0 = off. */
  readonly perIpMaxConnections: number;
  /** IPv6 clients are grouped by this many leading bits (a /64 is one subscriber). */
  readonly perIpIpv6Prefix: number;
  /** New connections per second per client address (token bucket, burst the same); 0 = off. */
  readonly perIpConnectionRate: number;
  /** The deny file's path, as configured; undefined = none. */
  readonly denyFile: string | undefined;
  /** The deny file's ranges ('a.b.c.d/n', 'x::/n'), read when the config is loaded. */
  readonly denyList: readonly string[];
  /** Ban a client that fails handshakes or sends non-TLS bytes too often; undefined = off. */
  readonly denyRepeatOffenders: RepeatOffenderPolicy | undefined;

  // Process
  /** undefined = one per CPU of the inherited affinity mask. */
  readonly workers: number | undefined;
  /** unhitch extension: pin worker i to the i-th allowed CPU. */
  readonly pinWorkers: boolean;
  readonly daemon: boolean;
  readonly user: string | undefined;
  readonly group: string | undefined;
  readonly chroot: string | undefined;
  readonly pidfile: string | undefined;
  /** Hitch's --dbg-listen: after each (re)start, every listening address, one a line. */
  readonly dbgListen: string | undefined;
  /** unhitch extension: grace period for draining on SIGTERM. */
  readonly drainTimeoutMs: number;
  /**
   * unhitch extension (HAProxy's hard-stop-after): how long an old generation keeps its
   * connections after a reload before they are closed; bounds the pile-up of generations.
   */
  readonly reloadDrainTimeoutMs: number;

  // TLS session resumption (unhitch extensions)
  readonly ticketKeyFile: string | undefined;
  readonly ticketRotationSec: number;

  // Observability
  readonly quiet: boolean;
  readonly logLevel: LogLevelName;
  readonly logFilename: string | undefined;
  readonly syslog: boolean;
  readonly syslogFacility: SyslogFacility;
  /** unhitch extension: readable lines or JSON (auto: readable on a terminal). */
  readonly logFormat: LogFormat;
  /** unhitch extension: loopback Prometheus endpoint, e.g. 127.0.0.1:9100. */
  readonly metrics: TcpAddress | undefined;

  /** unhitch extension: the acme block; undefined = off. */
  readonly acme: AcmeConfig | undefined;
}

/** Defaults, Hitch 1.7's where Hitch has the option. Frozen: copy, never mutate. */
export const DEFAULT_TLS: TlsSettings = Object.freeze({
  tlsProtos: Object.freeze(['TLSv1.2', 'TLSv1.3'] as TlsProtocolName[]),
  ciphers: 'EECDH+AESGCM:EDH+AESGCM',
  ciphersuites: 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256',
  // Not Hitch's default (off): TLS scanners (testssl.sh) rate a server that lets clients
  // choose the TLS 1.2 cipher as HIGH; `prefer-server-ciphers = off` restores Hitch's.
  preferServerCiphers: true,
  sniNomatchAbort: false,
  clientVerify: 'none',
  clientVerifyCa: undefined,
});

export const DEFAULT_FRONTEND_ADDRESS: TcpAddress = Object.freeze({
  kind: 'tcp',
  host: undefined,
  port: 8443,
});

/** The default `ecdh-curve`: X25519MLKEM768 for clients that offer it, else X25519, P-256, P-384. */
export const DEFAULT_KEY_EXCHANGE_GROUPS = 'X25519MLKEM768:X25519:P-256:P-384';

export const DEFAULT_CONFIG: ProxyConfig = Object.freeze({
  source: '<defaults>',
  frontends: Object.freeze([]),
  backend: Object.freeze({ kind: 'tcp', host: '127.0.0.1', port: 8000 }),
  pemFiles: Object.freeze([]),
  pemDir: undefined,
  pemDirGlob: undefined,
  // Hitch's defaults (configuration.c): OCSP fetching is on unless ocsp-dir = "".
  ocspDir: '/var/lib/hitch/',
  ocspConnectTimeoutMs: 4_000,
  ocspResponseTimeoutMs: 10_000,
  ocspRefreshIntervalMs: 1_800_000,
  ocspVerifyStaple: false,
  tls: DEFAULT_TLS,
  // Post-quantum hybrid first (what browsers offer), then the classic groups; OpenSSL 3.5
  // (Node 22 and 24) has ML-KEM. `ecdh-curve` replaces the whole list.
  ecdhCurve: DEFAULT_KEY_EXCHANGE_GROUPS,
  alpnProtos: Object.freeze([]),
  backendConnectTimeoutMs: 30_000,
  backendRefreshSec: 0,
  sslHandshakeTimeoutMs: 30_000,
  proxyProtocol: 'off',
  writeIp: false,
  proxyTlv: true,
  proxyAuthority: true,
  proxyClientCert: false,
  proxyProxy: false,
  forwardedFor: false,
  // Like Hitch's other 30 s timeouts; it applies only with forwarded-for (off by default).
  requestHeadTimeoutMs: 30_000,
  idleTimeoutMs: 0,
  maxHandshakes: 0,
  backendSourceAddresses: Object.freeze([]),
  backlog: 100,
  keepaliveSec: 3600,
  recvBufferBytes: undefined,
  sendBufferBytes: undefined,
  tcpFastOpen: false,
  perIpMaxConnections: 0,
  perIpIpv6Prefix: 64,
  perIpConnectionRate: 0,
  denyFile: undefined,
  denyList: Object.freeze([]),
  denyRepeatOffenders: undefined,
  workers: undefined,
  pinWorkers: true,
  daemon: false,
  user: undefined,
  group: undefined,
  chroot: undefined,
  pidfile: undefined,
  dbgListen: undefined,
  drainTimeoutMs: 30_000,
  reloadDrainTimeoutMs: 3_600_000,
  ticketKeyFile: undefined,
  ticketRotationSec: 12 * 3600,
  quiet: false,
  logLevel: 'info',
  logFilename: undefined,
  syslog: false,
  syslogFacility: 'daemon',
  logFormat: 'auto',
  metrics: undefined,
  acme: undefined,
}) as ProxyConfig;

export const DEFAULT_ACME: Omit<AcmeConfig, 'domains'> = Object.freeze({
  directoryUrl: 'https://acme-v02.api.letsencrypt.org/directory',
  contact: Object.freeze([]),
  stateDir: '/var/lib/unhitch/acme',
  challenge: 'tls-alpn-01',
  httpListen: undefined,
  retrySec: 60,
});
