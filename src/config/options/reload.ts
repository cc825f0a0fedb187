/**
 * What a SIGHUP does with each option, as src/cluster/reload.ts and the worker really
 * behave: the reload re-reads the command line and its config, starts a new generation of
 * workers with the new model and retires the old one, so everything a worker reads from
 * the model applies to new connections. What the primary set up once at start (its own
 * logger, pidfile, metrics endpoint, detaching) stays as it was until a restart.
 *
 * Kept beside the option table, not in it (the table says how an option is parsed; this
 * says how it lives), and keyed by option name: a unit test fails when an option has no
 * entry, and docs/configuration.md and the man pages print it.
 */

export type ReloadApplies = 'yes' | 'no' | 'partly' | 'not carried out';

export interface ReloadEffect {
  readonly applies: ReloadApplies;
  /** Said after the verdict in the reference, when the verdict alone would mislead. */
  readonly note?: string;
}

const YES: ReloadEffect = { applies: 'yes' };
const NOT_CARRIED_OUT: ReloadEffect = { applies: 'not carried out' };
const PRIMARY_LOGGER: ReloadEffect = {
  applies: 'partly',
  note: "the new workers log with it; the primary's own lines keep the start's setting",
};

export const RELOAD_EFFECTS: Readonly<Record<string, ReloadEffect>> = Object.freeze({
  // Listening and certificates: the new generation binds new addresses and loads the files again.
  frontend: {
    applies: 'yes',
    note: 'new addresses are bound, removed ones closed; an unchanged address keeps its socket',
  },
  'pem-file': { applies: 'yes', note: 'the files are read again' },
  host: YES,
  port: YES,
  'match-global-certs': YES,
  cert: YES,
  'private-key': YES,
  'ocsp-resp-file': YES,
  backend: YES,
  // TLS: each new worker builds its TLS servers from the new model.
  'tls-protos': YES,
  ssl: YES,
  tls: YES,
  ciphers: YES,
  ciphersuites: YES,
  'prefer-server-ciphers': YES,
  'sni-nomatch-abort': YES,
  'ecdh-curve': YES,
  'alpn-protos': YES,
  // Data plane: per connection, in the workers.
  'write-ip': YES,
  'write-proxy': YES,
  'write-proxy-v1': YES,
  'write-proxy-v2': YES,
  'proxy-proxy': YES,
  'backend-connect-timeout': YES,
  'ssl-handshake-timeout': YES,
  backlog: YES,
  keepalive: YES,
  'recv-bufsize': NOT_CARRIED_OUT,
  'send-bufsize': NOT_CARRIED_OUT,
  'tcp-fastopen': NOT_CARRIED_OUT,
  'enable-tcp-fastopen': NOT_CARRIED_OUT,
  // Process.
  workers: { applies: 'yes', note: 'the new generation has the new count' },
  daemon: { applies: 'no', note: 'the process detached (or not) at start' },
  user: { applies: 'yes', note: 'the new workers drop to it; the primary stays root' },
  group: { applies: 'yes', note: 'the new workers drop to it; the primary stays root' },
  chroot: NOT_CARRIED_OUT,
  pidfile: { applies: 'no', note: 'written once at start' },
  'dbg-listen': { applies: 'yes', note: 'rewritten after every reload' },
  client: YES,
  // Logging.
  quiet: PRIMARY_LOGGER,
  syslog: PRIMARY_LOGGER,
  'log-level': PRIMARY_LOGGER,
  'log-filename': {
    applies: 'partly',
    note: 'the new workers write to it; the primary keeps its file (reopened by name on every SIGHUP, for logrotate)',
  },
  'syslog-facility': PRIMARY_LOGGER,
  'log-format': PRIMARY_LOGGER,
  // unhitch's own.
  'pin-workers': YES,
  'drain-timeout': YES,
  'reload-drain-timeout': {
    applies: 'yes',
    note: 'the new value bounds the generation this reload retires',
  },
  'ticket-key-file': {
    applies: 'yes',
    note: 're-read; a changed key goes to every worker at once',
  },
  'ticket-rotation': YES,
  'forwarded-for': YES,
  'backend-source-addresses': YES,
  'per-ip-max-connections': {
    applies: 'yes',
    note: 'the new workers count from zero; the old ones keep counting their own connections',
  },
  'per-ip-ipv6-prefix': YES,
  'per-ip-connection-rate': YES,
  'deny-file': {
    applies: 'yes',
    note: 're-read; a bad file rejects the reload and the running list stays. Established connections are not closed',
  },
  'deny-repeat-offenders': { applies: 'yes', note: 'bans in force carry over to the new workers' },
  'request-head-timeout': YES,
  'idle-timeout': {
    applies: 'yes',
    note: "the new generation's connections; an old generation's keep the value they started with",
  },
  'max-handshakes': YES,
  metrics: { applies: 'no', note: 'the endpoint is opened once at start' },
  acme: { applies: 'yes', note: 'a changed block starts a new order' },
  directory: YES,
  contact: YES,
  domain: YES,
  'state-dir': YES,
  challenge: YES,
  'http-listen': YES,
  retry: YES,
  // Hitch's, not carried out by node.
  'ssl-engine': NOT_CARRIED_OUT,
  'session-cache': NOT_CARRIED_OUT,
  'shared-cache-listen': NOT_CARRIED_OUT,
  'shared-cache-peer': NOT_CARRIED_OUT,
  'shared-cache-if': NOT_CARRIED_OUT,
  'ring-slots': NOT_CARRIED_OUT,
  'ring-data-len': NOT_CARRIED_OUT,
  // PROXY v2 contents, client certificates, OCSP.
  'proxy-tlv': YES,
  'proxy-authority': YES,
  'proxy-client-cert': YES,
  'client-verify': YES,
  'client-verify-ca': YES,
  'ocsp-dir': YES,
  'ocsp-connect-tmo': YES,
  'ocsp-resp-tmo': YES,
  'ocsp-refresh-interval': YES,
  'ocsp-verify-staple': YES,
  'pem-dir': { applies: 'yes', note: 'the directory is read again' },
  'pem-dir-glob': YES,
  'backend-refresh': YES,
});

export function reloadEffect(name: string): ReloadEffect | undefined {
  return Object.hasOwn(RELOAD_EFFECTS, name) ? RELOAD_EFFECTS[name] : undefined;
}
