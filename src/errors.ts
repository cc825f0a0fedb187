/**
 * THE registry of unhitch's error and warning codes. Every code a user can meet (in a
 * log line, on stderr, in an exit status) is defined here once, with what it means, the
 * exit status when it stops unhitch, and the level it is logged at. Error classes take
 * their codes from here, the CLI its exit status, and docs/errors.md's table is generated
 * from it (`npm run docs:codes`; a unit test fails when the two disagree).
 */

export type CodeLogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug';

export interface CodeSpec {
  readonly meaning: string;
  /** The process's exit status when this code stops unhitch; null: it never does. */
  readonly exitStatus: number | null;
  readonly level: CodeLogLevel;
}

/** Hitch exits 1 for every start-up failure; scripts and systemd units rely on it. */
const EXIT_STARTUP = 1;

export const CODES = {
  // Configuration: hitch.conf, TOML, the command line. Stop the start (or a reload).
  UNHITCH_CONFIG_SYNTAX: {
    meaning: 'The config text does not parse: unexpected character or token (file:line:column).',
    exitStatus: EXIT_STARTUP,
    level: 'error',
  },
  UNHITCH_CONFIG_UNKNOWN_OPTION: {
    meaning: 'An option or flag that neither Hitch nor unhitch knows.',
    exitStatus: EXIT_STARTUP,
    level: 'error',
  },
  UNHITCH_CONFIG_INVALID_VALUE: {
    meaning: 'A known option with a value it does not accept (type or range).',
    exitStatus: EXIT_STARTUP,
    level: 'error',
  },
  UNHITCH_CONFIG_MISSING: {
    meaning: 'A required value is absent, e.g. no certificate or no frontend.',
    exitStatus: EXIT_STARTUP,
    level: 'error',
  },
  UNHITCH_CONFIG_FILE: {
    meaning: 'The config file, or a file it names (certificate, key), cannot be read or used.',
    exitStatus: EXIT_STARTUP,
    level: 'error',
  },
  UNHITCH_CONFIG_CONFLICT: {
    meaning: 'Options that cannot be combined.',
    exitStatus: EXIT_STARTUP,
    level: 'error',
  },
  UNHITCH_CONFIG_UNIMPLEMENTED: {
    meaning: 'A Hitch option unhitch knows but does not implement; it is ignored (one warning).',
    exitStatus: null,
    level: 'warn',
  },
  UNHITCH_CONFIG_DEPRECATED: {
    meaning: 'An option Hitch deprecated; it still works.',
    exitStatus: null,
    level: 'warn',
  },
  UNHITCH_CONFIG_ALPN_UNSEEN: {
    meaning:
      '`alpn-protos` names several protocols but `write-proxy-v2` is off: the backend cannot learn which one the client chose (Hitch 1.7.1+ accepts this silently).',
    exitStatus: null,
    level: 'warn',
  },
  UNHITCH_CONFIG_LEGACY_PROTOCOL: {
    meaning: 'A TLS version older than 1.2 is enabled.',
    exitStatus: null,
    level: 'warn',
  },
  UNHITCH_UNSUPPORTED_SETTING: {
    meaning: 'A setting node cannot honour as Hitch would; the log line says what happens instead.',
    exitStatus: null,
    level: 'warn',
  },
  // Start-up of the process and its workers.
  UNHITCH_LOG_FILE: {
    meaning: '`log-filename` cannot be created or opened for appending.',
    exitStatus: EXIT_STARTUP,
    level: 'error',
  },
  UNHITCH_USER_UNKNOWN: {
    meaning: '`user` or `group` names no account.',
    exitStatus: EXIT_STARTUP,
    level: 'error',
  },
  UNHITCH_IDENTITY_IGNORED: {
    meaning:
      'Not started as root: `user`/`group` are not switched to; unhitch runs as the current user.',
    exitStatus: null,
    level: 'warn',
  },
  UNHITCH_ROOT_WORKERS: {
    meaning:
      'Started as root with no `user` (or one that is root): workers would serve as root. Hitch refuses too ("Refusing to run workers as root.").',
    exitStatus: EXIT_STARTUP,
    level: 'error',
  },
  UNHITCH_PRIVILEGE_DROP: {
    meaning: 'setgroups/setgid/setuid failed while dropping root.',
    exitStatus: EXIT_STARTUP,
    level: 'error',
  },
  UNHITCH_DAEMON: {
    meaning:
      '--daemon: the detached process could not be started, or exited before its frontends listened.',
    exitStatus: EXIT_STARTUP,
    level: 'error',
  },
  UNHITCH_BACKEND: {
    meaning:
      'The backend cannot be used, as Hitch refuses it at start: a unix socket path that is missing or not a socket, or a host name that does not resolve.',
    exitStatus: EXIT_STARTUP,
    level: 'error',
  },
  UNHITCH_FRONTEND_HOST: {
    meaning: 'A frontend names a host that does not resolve, so it cannot be bound.',
    exitStatus: EXIT_STARTUP,
    level: 'error',
  },
  UNHITCH_PIDFILE: {
    meaning: 'The pidfile cannot be written.',
    exitStatus: EXIT_STARTUP,
    level: 'error',
  },
  UNHITCH_METRICS_ADDRESS: {
    meaning:
      'The metrics endpoint address is not loopback or cannot be bound (or served, by the services process).',
    exitStatus: EXIT_STARTUP,
    level: 'error',
  },
  UNHITCH_TLS_POLICY: {
    meaning: 'The TLS settings (protocols, ciphers, curves) cannot be applied.',
    exitStatus: EXIT_STARTUP,
    level: 'error',
  },
  UNHITCH_OPENSSL_MISSING: {
    meaning: '`openssl` is needed to make the demo certificate and cannot be run.',
    exitStatus: EXIT_STARTUP,
    level: 'error',
  },
  UNHITCH_TICKET_KEY_FILE: {
    meaning: 'The session ticket key file cannot be read or written.',
    exitStatus: EXIT_STARTUP,
    level: 'error',
  },
  UNHITCH_TICKET_KEY_FORMAT: {
    meaning: 'The ticket key file is neither raw bytes, hex nor base64.',
    exitStatus: EXIT_STARTUP,
    level: 'error',
  },
  UNHITCH_TICKET_KEY_LENGTH: {
    meaning: 'The ticket key file does not hold exactly 48 bytes.',
    exitStatus: EXIT_STARTUP,
    level: 'error',
  },
  UNHITCH_TICKET_KEY_INSECURE: {
    meaning:
      'The ticket key file is readable by group or others; anyone who reads it can decrypt resumed sessions.',
    exitStatus: null,
    level: 'warn',
  },
  UNHITCH_TICKET_KEY_RELOAD: {
    meaning:
      'SIGHUP: the ticket-key-file could not be read or parsed; the key in use stays (nothing stops).',
    exitStatus: null,
    level: 'error',
  },
  UNHITCH_TICKET_KEY_SAVE: {
    meaning:
      'Rotation: the new ticket key cannot be written to ticket-key-file (read-only, full disk); workers use it anyway, the file keeps the previous key until a write succeeds.',
    exitStatus: null,
    level: 'error',
  },
  UNHITCH_CERTIFICATE_WARNING: {
    meaning:
      'A certificate or key is used but questionable: expired, key readable by others, an SNI name overridden, no CA store to verify staples.',
    exitStatus: null,
    level: 'warn',
  },
  UNHITCH_WORKERS_FAILED: {
    meaning: 'The first generation of workers did not all start; the log says why.',
    exitStatus: EXIT_STARTUP,
    level: 'error',
  },
  UNHITCH_LISTEN: {
    meaning:
      "A frontend's listening socket cannot be bound (EADDRINUSE, EACCES, EADDRNOTAVAIL); the message names the address and errno, and the worker (or reload) does not start.",
    exitStatus: null,
    level: 'error',
  },
  UNHITCH_WORKER_START: {
    meaning: 'One worker could not start (listen, TLS context, privilege drop); the err says why.',
    exitStatus: null,
    level: 'error',
  },
  UNHITCH_AFFINITY: {
    meaning: 'The CPU affinity mask cannot be read or a worker cannot be pinned; it runs unpinned.',
    exitStatus: null,
    level: 'warn',
  },
  // Connections: logged per connection, never stop the process.
  UNHITCH_SNI_NOMATCH: {
    meaning: 'sni-nomatch-abort: the client asked for a name no certificate covers.',
    exitStatus: null,
    level: 'info',
  },
  UNHITCH_ACME_CHALLENGE_REFUSED: {
    meaning:
      'A client offered acme-tls/1 for a name with no open ACME challenge (or not in the acme block); refused with no_application_protocol.',
    exitStatus: null,
    level: 'info',
  },
  UNHITCH_ACME_FAILED: {
    meaning:
      'ACME: obtaining or renewing a certificate failed (CA unreachable, challenge rejected, order invalid); the last good certificate keeps serving and the order is retried with back-off.',
    exitStatus: null,
    level: 'error',
  },
  UNHITCH_ACME_STORE: {
    meaning:
      'ACME: the state directory cannot be created, read or written (account key, certificate); the obtained certificate is served from memory until a write succeeds.',
    exitStatus: null,
    level: 'error',
  },
  UNHITCH_ACME_CHALLENGE_UNCONFIRMED: {
    meaning:
      'ACME tls-alpn-01: a worker did not confirm the challenge certificate in time; the CA is asked to validate anyway.',
    exitStatus: null,
    level: 'warn',
  },
  UNHITCH_PROXY_HEADER_INVALID: {
    meaning: 'proxy-proxy: the PROXY header from the load balancer is malformed.',
    exitStatus: null,
    level: 'info',
  },
  UNHITCH_PROXY_HEADER_REUSED: {
    meaning: 'Internal: a PROXY header reader was fed after it finished.',
    exitStatus: null,
    level: 'error',
  },
  UNHITCH_OCSP_INVALID: {
    meaning:
      'An OCSP response that must not be stapled: unsuccessful, not for this certificate, or (ocsp-verify-staple) not signed by a trusted responder.',
    exitStatus: 1,
    level: 'error',
  },
  UNHITCH_OCSP_STAPLE_REJECTED: {
    meaning:
      'A worker found an OCSP response (ocsp-dir cache or ocsp-resp-file) that does not check; it is not stapled, a previous good one stays until its nextUpdate.',
    exitStatus: null,
    level: 'warn',
  },
  UNHITCH_BACKEND_LOOKUP: {
    meaning:
      'A backend given by name could not be resolved (at start or at a backend-refresh); the last address stays in use, or the name is looked up per connection.',
    exitStatus: null,
    level: 'warn',
  },
  UNHITCH_OCSP_FETCH: {
    meaning:
      "Fetching a certificate's OCSP response from its responder failed (connect, timeout, HTTP status); retried with back-off, nothing stapled meanwhile.",
    exitStatus: null,
    level: 'warn',
  },
  UNHITCH_CLIENT_HELLO_TIMEOUT: {
    meaning:
      'No complete ClientHello within ssl-handshake-timeout (read before TLS when SNI picks the client-certificate policy or sni-nomatch-abort is on).',
    exitStatus: null,
    level: 'info',
  },
  UNHITCH_CLIENT_CERT_REJECTED: {
    meaning:
      'client-verify = optional: the client sent a certificate that does not chain to client-verify-ca.',
    exitStatus: null,
    level: 'info',
  },
  UNHITCH_PROXY_HEADER_TIMEOUT: {
    meaning: 'proxy-proxy: no complete PROXY header within ssl-handshake-timeout.',
    exitStatus: null,
    level: 'info',
  },
  UNHITCH_PROXY_HEADER_INCOMPLETE: {
    meaning: 'proxy-proxy: the client closed its side before its PROXY header was complete.',
    exitStatus: null,
    level: 'info',
  },
  UNHITCH_BACKEND_CONNECT_TIMEOUT: {
    meaning: 'The backend did not accept within backend-connect-timeout.',
    exitStatus: null,
    level: 'warn',
  },
  UNHITCH_FORWARDED_ADDRESS: {
    meaning: 'forwarded-for: the client address cannot be written into the header.',
    exitStatus: null,
    level: 'warn',
  },
  UNHITCH_FORWARDED_REQUEST_TOO_LARGE: {
    meaning:
      'forwarded-for: a request head over 16 KiB; the client gets 431 and the connection closes.',
    exitStatus: null,
    level: 'warn',
  },
  UNHITCH_FORWARDED_REQUEST_INVALID: {
    meaning:
      'forwarded-for: bytes that are not a well-formed HTTP/1.x request (or are framed ambiguously); the client gets 400 and the connection closes.',
    exitStatus: null,
    level: 'warn',
  },
  UNHITCH_FORWARDED_RESPONSE_INVALID: {
    meaning:
      "forwarded-for: the backend's responses cannot be followed as HTTP/1.x, so an upgrade could not be told apart; the connection closes.",
    exitStatus: null,
    level: 'warn',
  },
  UNHITCH_WRITE_IP: {
    meaning: 'write-ip: the client address is not an IP address.',
    exitStatus: null,
    level: 'warn',
  },
  UNHITCH_CLIENT_HELLO_TOO_LARGE: {
    meaning:
      'A ClientHello over 16 KiB (declared, or still incomplete past 17 KiB of records) where the ClientHello is read before TLS; refused with illegal_parameter.',
    exitStatus: null,
    level: 'info',
  },
  UNHITCH_CONNECTION_REFUSED: {
    meaning:
      'A connection closed at accept, before any TLS work, by a per-client limit; the reason says which (per_ip_max_connections, per_ip_rate, denied, repeat_offender). Rate-limited per reason; the metric unhitch_connections_refused_total counts every one.',
    exitStatus: null,
    level: 'info',
  },
  UNHITCH_CLIENT_BANNED: {
    meaning:
      'deny-repeat-offenders: a client failed handshakes (or sent non-TLS bytes) too often within the window; every worker refuses it at accept until the ban ends.',
    exitStatus: null,
    level: 'warn',
  },
  UNHITCH_FORWARDED_REQUEST_TIMEOUT: {
    meaning:
      'forwarded-for: a request head not complete within request-head-timeout (a client that sends nothing, or trickles its head, after the handshake); the client gets 408 and the connection closes.',
    exitStatus: null,
    level: 'info',
  },
  UNHITCH_IDLE_TIMEOUT: {
    meaning:
      'idle-timeout: a connection carried no byte either way for that long; both sides were closed as after a backend close.',
    exitStatus: null,
    level: 'info',
  },
  UNHITCH_ACCEPT_PAUSED: {
    meaning:
      'max-handshakes: a worker had that many handshakes in progress and stopped accepting; new clients wait in the listen backlog until it resumes. Logged at most once per 10 s with the counts.',
    exitStatus: null,
    level: 'info',
  },
  // Operations of a running primary: logged, it keeps serving.
  UNHITCH_WORKER_DIED: {
    meaning: 'A worker exited unexpectedly; it is restarted with a growing back-off.',
    exitStatus: null,
    level: 'error',
  },
  UNHITCH_WORKER_IPC: {
    meaning:
      'A message to a worker could not be written: it was exiting at that moment (its exit is handled like any other).',
    exitStatus: null,
    level: 'info',
  },
  UNHITCH_WORKER_KILLED: {
    meaning:
      'A draining worker was still running 2 s after its drain period (stuck) and was killed.',
    exitStatus: null,
    level: 'warn',
  },
  UNHITCH_RELOAD_REJECTED: {
    meaning: 'SIGHUP: the new configuration or certificates are invalid; the running ones stay.',
    exitStatus: null,
    level: 'error',
  },
  UNHITCH_RELOAD_FAILED: {
    meaning: 'SIGHUP: the new workers did not start; the running generation stays.',
    exitStatus: null,
    level: 'error',
  },
  UNHITCH_DBG_LISTEN: {
    meaning:
      '`dbg-listen`: the file listing the listening addresses cannot be written; the proxy serves anyway.',
    exitStatus: null,
    level: 'error',
  },
  UNHITCH_CLEANUP: {
    meaning: 'Stopping: a cleanup (pidfile removal, metrics endpoint close) failed.',
    exitStatus: null,
    level: 'warn',
  },
  UNHITCH_SYSLOG_DROPPED: {
    meaning:
      '`syslog`: the syslog socket stopped reading; past a 1 MiB backlog lines were dropped (counted in `unhitch_log_lines_dropped_total`). Logged once it reads again, with the count.',
    exitStatus: null,
    level: 'warn',
  },
  UNHITCH_LOG_REOPEN: {
    meaning:
      '`log-filename` could not be reopened after a rotation; lines go on into the file held, and the reopen is retried. Logged once per failing streak.',
    exitStatus: null,
    level: 'error',
  },
  UNHITCH_WORKER_SPAWN: {
    meaning:
      'A worker process could not be created (fork failed, e.g. EMFILE or EAGAIN in the primary); the slot is retried with the same growing back-off as a crash.',
    exitStatus: null,
    level: 'error',
  },
  UNHITCH_PRIMARY_GONE: {
    meaning:
      'A worker lost its primary (killed with SIGKILL or crashed): it accepts nothing new, lets open connections finish for at most drain-timeout, then exits.',
    exitStatus: null,
    level: 'warn',
  },
  UNHITCH_RELOAD_STATUS: {
    meaning:
      "The reload's verdict could not be written beside the pidfile, so `unhitch --reload` (the unit's ExecReload) will not learn it and times out.",
    exitStatus: null,
    level: 'error',
  },
  UNHITCH_RELOAD_REQUEST: {
    meaning:
      '`unhitch --reload`: no running unhitch to signal (pidfile missing or stale), or it gave no verdict (exited, or not within 60 s).',
    exitStatus: EXIT_STARTUP,
    level: 'error',
  },
  UNHITCH_SERVICES_DIED: {
    meaning:
      'The unprivileged services process (ACME orders and http-01, OCSP fetches, the metrics endpoint) exited or could not start; it is restarted with a growing back-off, an ACME order under way is retried.',
    exitStatus: null,
    level: 'error',
  },
  UNHITCH_SERVICES_REPORT_INVALID: {
    meaning:
      'The unprivileged services process sent the primary a report with a field of the wrong kind or size (a bug, or a compromised process): the report is refused and the services process killed and restarted.',
    exitStatus: null,
    level: 'error',
  },
} as const satisfies Record<`UNHITCH_${string}`, CodeSpec>;

export type UnhitchCode = keyof typeof CODES;

/** Environment variables share the prefix; they are names, not codes. */
export const UNHITCH_ENVIRONMENT_VARIABLES = [
  'UNHITCH_WORKER_INDEX',
  'UNHITCH_DEMO_PORT',
  // --daemon: the detached process's end of the report pipe to its launcher.
  'UNHITCH_DAEMON_REPORT_FD',
  // syslog: the socket logger(1) writes to, for tests (/dev/log otherwise).
  'UNHITCH_SYSLOG_SOCKET',
  // log-filename: ms between checks that the name is still the file held, for tests (60 s).
  'UNHITCH_LOG_REOPEN_CHECK_MS',
] as const;

export function isUnhitchCode(value: unknown): value is UnhitchCode {
  return typeof value === 'string' && Object.hasOwn(CODES, value);
}

/** An error with a registered code. Subclasses narrow `C` to their family. */
export class UnhitchError<C extends UnhitchCode = UnhitchCode> extends Error {
  readonly code: C;
  constructor(code: C, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UnhitchError';
    this.code = code;
  }
}

/** The exit status for an error that stops unhitch: the registry's, else 1 like Hitch. */
export function exitStatusFor(error: unknown): number {
  const code = (error as { code?: unknown } | null)?.code;
  if (isUnhitchCode(code)) return CODES[code].exitStatus ?? EXIT_STARTUP;
  return EXIT_STARTUP;
}

/**
 * Logs `message` at the code's registered level, with the code and (when given) the
 * error through pino's `err` serializer.
 */
export function logCode(
  logger: CodeLogger,
  code: UnhitchCode,
  fields: Record<string, unknown>,
  message: string,
): void {
  logger[CODES[code].level]({ ...fields, code }, message);
}

/** The part of pino's Logger that logCode needs (src/ops imports stay out of this file). */
export type CodeLogger = Record<CodeLogLevel, (fields: object, message: string) => void>;

/** docs/errors.md's table: one row per code, in registry order. */
export function codesMarkdownTable(): string {
  const rows = Object.entries(CODES).map(
    ([code, spec]: [string, CodeSpec]) =>
      `| \`${code}\` | ${spec.meaning.replaceAll('|', '\\|')} | ${spec.exitStatus ?? '—'} | ${spec.level} |`,
  );
  return [
    '| Code | Meaning | Exit status | Log level |',
    '| --- | --- | --- | --- |',
    ...rows,
  ].join('\n');
}
