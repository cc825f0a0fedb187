/**
 * Each option's default, as a reader should see it, taken from the model's frozen
 * defaults (model.ts) wherever there is a value, so the reference cannot drift from what
 * the code does. Keyed by option name, beside the table rather than in it; a unit test
 * fails when an option has no entry.
 */
import { DEFAULT_ACME, DEFAULT_CONFIG, DEFAULT_FRONTEND_ADDRESS, DEFAULT_TLS } from '../model.js';

const onOff = (value: boolean): string => (value ? 'on' : 'off');
const seconds = (ms: number): string => `${ms / 1000}`;
const UNSET = 'unset';
const OFF = 'off';
const address = (host: string | undefined, port: number): string => `[${host ?? '*'}]:${port}`;
const backend = DEFAULT_CONFIG.backend;

export const OPTION_DEFAULTS: Readonly<Record<string, string>> = Object.freeze({
  frontend: `${address(DEFAULT_FRONTEND_ADDRESS.host, DEFAULT_FRONTEND_ADDRESS.port)} when none is given`,
  'pem-file': 'none (at least one certificate, pem-dir or acme is needed)',
  host: '* (every address)',
  port: 'none (required in a frontend block)',
  'match-global-certs': OFF,
  cert: 'none (required in a pem-file block)',
  'private-key': 'none (the key is in cert)',
  'ocsp-resp-file': UNSET,
  backend: backend.kind === 'tcp' ? address(backend.host, backend.port) : backend.path,
  'tls-protos': DEFAULT_TLS.tlsProtos.join(' '),
  ssl: OFF,
  tls: OFF,
  ciphers: DEFAULT_TLS.ciphers,
  ciphersuites: DEFAULT_TLS.ciphersuites,
  'prefer-server-ciphers': onOff(DEFAULT_TLS.preferServerCiphers),
  'sni-nomatch-abort': onOff(DEFAULT_TLS.sniNomatchAbort),
  'ecdh-curve': DEFAULT_CONFIG.ecdhCurve,
  'alpn-protos': 'none (no ALPN)',
  'write-ip': onOff(DEFAULT_CONFIG.writeIp),
  'write-proxy': OFF,
  'write-proxy-v1': OFF,
  'write-proxy-v2': OFF,
  'proxy-proxy': onOff(DEFAULT_CONFIG.proxyProxy),
  'backend-connect-timeout': seconds(DEFAULT_CONFIG.backendConnectTimeoutMs),
  'ssl-handshake-timeout': seconds(DEFAULT_CONFIG.sslHandshakeTimeoutMs),
  backlog: `${DEFAULT_CONFIG.backlog}`,
  keepalive: `${DEFAULT_CONFIG.keepaliveSec}`,
  'recv-bufsize': '0',
  'send-bufsize': '0',
  'tcp-fastopen': onOff(DEFAULT_CONFIG.tcpFastOpen),
  'enable-tcp-fastopen': onOff(DEFAULT_CONFIG.tcpFastOpen),
  workers: 'one per CPU the process may run on',
  daemon: onOff(DEFAULT_CONFIG.daemon),
  user: 'unset (as root: refused, workers never serve as root)',
  group: "unset (the user's group)",
  chroot: UNSET,
  pidfile: UNSET,
  'dbg-listen': UNSET,
  client: OFF,
  quiet: onOff(DEFAULT_CONFIG.quiet),
  syslog: onOff(DEFAULT_CONFIG.syslog),
  'log-level': `1 (${DEFAULT_CONFIG.logLevel})`,
  'log-filename': 'unset (standard output)',
  'pin-workers': onOff(DEFAULT_CONFIG.pinWorkers),
  'drain-timeout': seconds(DEFAULT_CONFIG.drainTimeoutMs),
  'reload-drain-timeout': seconds(DEFAULT_CONFIG.reloadDrainTimeoutMs),
  'ticket-key-file': 'unset (a key made at start, in memory)',
  'ticket-rotation': `${DEFAULT_CONFIG.ticketRotationSec}`,
  'forwarded-for': onOff(DEFAULT_CONFIG.forwardedFor),
  'backend-source-addresses': 'unset (the kernel picks)',
  'per-ip-max-connections': `${DEFAULT_CONFIG.perIpMaxConnections} (off)`,
  'per-ip-ipv6-prefix': `${DEFAULT_CONFIG.perIpIpv6Prefix}`,
  'per-ip-connection-rate': `${DEFAULT_CONFIG.perIpConnectionRate} (off)`,
  'deny-file': UNSET,
  'deny-repeat-offenders': 'unset (off)',
  metrics: 'unset (no endpoint)',
  acme: 'unset (no ACME)',
  directory: DEFAULT_ACME.directoryUrl,
  contact: 'none',
  domain: 'none (at least one in an acme block)',
  'state-dir': DEFAULT_ACME.stateDir,
  challenge: DEFAULT_ACME.challenge,
  'http-listen': 'unset (required with http-01)',
  retry: `${DEFAULT_ACME.retrySec}`,
  'ssl-engine': UNSET,
  'syslog-facility': DEFAULT_CONFIG.syslogFacility,
  'log-format': DEFAULT_CONFIG.logFormat,
  'proxy-tlv': onOff(DEFAULT_CONFIG.proxyTlv),
  'proxy-authority': onOff(DEFAULT_CONFIG.proxyAuthority),
  'proxy-client-cert': onOff(DEFAULT_CONFIG.proxyClientCert),
  'client-verify': DEFAULT_TLS.clientVerify,
  'client-verify-ca': UNSET,
  'ocsp-dir': `${DEFAULT_CONFIG.ocspDir}`,
  'ocsp-connect-tmo': seconds(DEFAULT_CONFIG.ocspConnectTimeoutMs),
  'ocsp-resp-tmo': seconds(DEFAULT_CONFIG.ocspResponseTimeoutMs),
  'ocsp-refresh-interval': seconds(DEFAULT_CONFIG.ocspRefreshIntervalMs),
  'ocsp-verify-staple': onOff(DEFAULT_CONFIG.ocspVerifyStaple),
  'pem-dir': UNSET,
  'pem-dir-glob': 'unset (every file)',
  'session-cache': '0',
  'shared-cache-listen': UNSET,
  'shared-cache-peer': 'none',
  'shared-cache-if': UNSET,
  'ring-slots': '0',
  'ring-data-len': '0',
  'backend-refresh': `${DEFAULT_CONFIG.backendRefreshSec} (resolved once at start)`,
});

export function optionDefault(name: string): string | undefined {
  return Object.hasOwn(OPTION_DEFAULTS, name) ? OPTION_DEFAULTS[name] : undefined;
}
