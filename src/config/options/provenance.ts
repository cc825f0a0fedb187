/**
 * Which Hitch release each option comes from, for the docs and --help: '1.7' for what the
 * installed Hitch 1.7.2 already parses (config file or flag), '1.8' for what only Hitch
 * 1.8 has (cfg_parser.y rules and getopt flags added in 1.8.0, refused by 1.7.2), and
 * 'unhitch' for unhitch's own extensions. Kept beside the option table, not in each entry
 * (the docs generator joins the two); test/unit/provenance.test.ts holds them in step.
 *
 * Hitch 1.8.0's additions over 1.7.2, as its parser and `hitch --test` show them:
 * `backend-connect-timeout` and `ssl-handshake-timeout` (file and flags), the value
 * `workers = auto` / `--workers=auto`, and `client-verify` / `client-verify-ca` inside a
 * `pem-file` block (VALUE_PROVENANCE, SCOPE_PROVENANCE).
 */
import type { OptionScope } from './table.js';

export type HitchVersion = '1.7' | '1.8' | 'unhitch';

const V17 = '1.7';
const V18 = '1.8';
const OWN = 'unhitch';

export const PROVENANCE: Readonly<Record<string, HitchVersion>> = Object.freeze({
  frontend: V17,
  'pem-file': V17,
  host: V17,
  port: V17,
  'match-global-certs': V17,
  cert: V17,
  'private-key': V17,
  'ocsp-resp-file': V17,
  backend: V17,
  'tls-protos': V17,
  ssl: V17,
  tls: V17,
  ciphers: V17,
  ciphersuites: V17,
  'prefer-server-ciphers': V17,
  'sni-nomatch-abort': V17,
  'ecdh-curve': V17,
  'alpn-protos': V17,
  'write-ip': V17,
  'write-proxy': V17,
  'write-proxy-v1': V17,
  'write-proxy-v2': V17,
  'proxy-proxy': V17,
  'backend-connect-timeout': V18,
  'ssl-handshake-timeout': V18,
  backlog: V17,
  keepalive: V17,
  'recv-bufsize': V17,
  'send-bufsize': V17,
  'tcp-fastopen': V17,
  'enable-tcp-fastopen': V17,
  workers: V17,
  daemon: V17,
  user: V17,
  group: V17,
  chroot: V17,
  pidfile: V17,
  'dbg-listen': V17,
  client: V17,
  quiet: V17,
  syslog: V17,
  'log-level': V17,
  'log-filename': V17,
  'pin-workers': OWN,
  'log-format': OWN,
  'drain-timeout': OWN,
  'reload-drain-timeout': OWN,
  'ticket-key-file': OWN,
  'ticket-rotation': OWN,
  'forwarded-for': OWN,
  'backend-source-addresses': OWN,
  'per-ip-max-connections': OWN,
  'per-ip-ipv6-prefix': OWN,
  'per-ip-connection-rate': OWN,
  'deny-file': OWN,
  'deny-repeat-offenders': OWN,
  'request-head-timeout': OWN,
  'idle-timeout': OWN,
  'max-handshakes': OWN,
  metrics: OWN,
  acme: OWN,
  directory: OWN,
  contact: OWN,
  domain: OWN,
  'state-dir': OWN,
  challenge: OWN,
  'http-listen': OWN,
  retry: OWN,
  'ssl-engine': V17,
  'syslog-facility': V17,
  'proxy-tlv': V17,
  'proxy-authority': V17,
  'proxy-client-cert': V17,
  'client-verify': V17,
  'client-verify-ca': V17,
  'ocsp-dir': V17,
  'ocsp-connect-tmo': V17,
  'ocsp-resp-tmo': V17,
  'ocsp-refresh-interval': V17,
  'ocsp-verify-staple': V17,
  'pem-dir': V17,
  'pem-dir-glob': V17,
  'session-cache': V17,
  'shared-cache-listen': V17,
  'shared-cache-peer': V17,
  'shared-cache-if': V17,
  'ring-slots': V17,
  'ring-data-len': V17,
  'backend-refresh': V17,
});

/** Values a 1.7 option only takes since a later release. */
export const VALUE_PROVENANCE: ReadonlyArray<{
  readonly option: string;
  readonly value: string;
  readonly since: HitchVersion;
}> = Object.freeze([{ option: 'workers', value: 'auto', since: V18 }]);

/** Places a 1.7 option may only be written since a later release. */
export const SCOPE_PROVENANCE: ReadonlyArray<{
  readonly option: string;
  readonly scope: OptionScope;
  readonly since: HitchVersion;
}> = Object.freeze([
  { option: 'client-verify', scope: 'pem-file', since: V18 },
  { option: 'client-verify-ca', scope: 'pem-file', since: V18 },
]);
