/**
 * THE option table: every Hitch 1.7/1.8 option plus the unhitch extensions, with value
 * type, where it may appear, its command-line flag, whether unhitch implements it and
 * how it sets the model. hitch.conf, TOML and the command line all go through here, so
 * an option is validated the same way whichever way it was written.
 */
import type { UnhitchCode } from '../../errors.js';
import { ConfigError } from '../errors.js';
import {
  type AcmeChallengeType,
  DEFAULT_CONFIG,
  DEFAULT_TLS,
  type LogFormat,
  type RepeatOffenderPolicy,
  type TlsProtocolName,
  type TlsSettings,
} from '../model.js';
import { notePemPosition } from '../pem-positions.js';
import {
  type AcmeDraft,
  type ConfigDraft,
  type FrontendDraft,
  formatPosition,
  newFrontendDraft,
  newPemDraft,
  type PemDraft,
} from './draft.js';
import type { Entry, ScalarItem } from './entry.js';
import {
  invalid,
  LEGACY_PROTOCOLS,
  MAX_DURATION_SECONDS,
  normalizeHost,
  parseAddressList,
  parseAlpnProtos,
  parseBackend,
  parseBool,
  parseBracketAddress,
  parseClientVerify,
  parseDnsName,
  parseHostPort,
  parseLogLevel,
  parsePort,
  parseSeconds,
  parseSyslogFacility,
  parseTlsProtos,
  parseUint,
  scalarItems,
  singleItem,
  TIMEOUT_RANGE,
} from './values.js';

export type OptionScope = 'global' | 'frontend' | 'pem-file' | 'acme';

export type OptionValueType =
  | 'string'
  | 'path'
  | 'bool'
  | 'uint'
  | 'seconds'
  | 'port'
  | 'host'
  | 'address'
  | 'backend'
  | 'frontend'
  | 'pem-file'
  | 'tls-protos'
  | 'log-level'
  | 'alpn-protos'
  | 'address-list'
  | 'client-verify'
  | 'acme'
  | 'acme-challenge'
  | 'log-format'
  | 'url'
  | 'dns-name';

export interface CliFlag {
  readonly long: string;
  readonly short: string | undefined;
  /** false: a switch that means "on" (Hitch's style for booleans). */
  readonly takesValue: boolean;
  /** Listed by real `hitch --help` (as opposed to an unhitch addition). */
  readonly hitch: boolean;
}

export interface BlockTarget {
  readonly frontend?: FrontendDraft | undefined;
  readonly pem?: PemDraft | undefined;
  readonly acme?: AcmeDraft | undefined;
}

export interface ApplyContext extends BlockTarget {
  readonly draft: ConfigDraft;
  /** Applies a nested block's entries (provided by apply.ts to avoid a cycle). */
  readonly applyBlock: (entries: readonly Entry[], scope: OptionScope, target: BlockTarget) => void;
}

export interface OptionSpec {
  readonly name: string;
  readonly valueType: OptionValueType;
  readonly scopes: readonly OptionScope[];
  /** May appear many times, each adding one (frontend, pem-file). */
  readonly repeatable: boolean;
  readonly cli: CliFlag | undefined;
  /** false: recognised, validated, then ignored with one UNHITCH_CONFIG_UNIMPLEMENTED warning. */
  readonly implemented: boolean;
  /** Why node cannot carry out an unimplemented option (--help and the warning say it). */
  readonly notCarriedOutBecause: string | undefined;
  /** true: unhitch-only, not in Hitch. */
  readonly extension: boolean;
  readonly summary: string;
  /** A valid hitch.conf value (the text after `=`), used by tests and --help. */
  readonly sample: string;
  readonly apply: (ctx: ApplyContext, entry: Entry) => void;
}

interface OptionBase {
  readonly name: string;
  readonly valueType: OptionValueType;
  readonly scopes?: readonly OptionScope[];
  readonly repeatable?: boolean;
  /** Short flag, or `false` for no command-line flag at all. */
  readonly short?: string | false;
  readonly hitchFlag?: boolean;
  readonly takesValue?: boolean;
  readonly implemented?: boolean;
  readonly notCarriedOutBecause?: string;
  readonly extension?: boolean;
  readonly summary: string;
  readonly sample: string;
}

function define(base: OptionBase, apply: (ctx: ApplyContext, entry: Entry) => void): OptionSpec {
  const scopes = base.scopes ?? ['global'];
  // Options of the acme block are flags too, as --acme-NAME (args.ts gathers them into one
  // acme block, so the command line and the block go through the same checks).
  const inAcme = scopes.includes('acme');
  const wantsFlag = base.short !== false && (scopes.includes('global') || inAcme);
  return {
    name: base.name,
    valueType: base.valueType,
    scopes,
    repeatable: base.repeatable ?? false,
    cli: wantsFlag
      ? {
          long: inAcme ? `acme-${base.name}` : base.name,
          short: typeof base.short === 'string' ? base.short : undefined,
          takesValue: base.takesValue ?? (base.valueType !== 'bool' || base.extension === true),
          hitch: base.hitchFlag ?? false,
        }
      : undefined,
    implemented: base.implemented ?? true,
    notCarriedOutBecause: base.notCarriedOutBecause,
    extension: base.extension ?? false,
    summary: base.summary,
    sample: base.sample,
    apply,
  };
}

/** One scalar, `""` = unset (reported to `set` as undefined). */
function scalar<T>(
  base: OptionBase,
  parse: (item: ScalarItem, text: string) => T,
  set: (ctx: ApplyContext, value: T | undefined, entry: Entry) => void,
): OptionSpec {
  return define(base, (ctx, entry) => {
    const item = singleItem(entry);
    set(ctx, item.text === undefined ? undefined : parse(item, item.text), entry);
  });
}

const asText = (_item: ScalarItem, text: string): string => text;
const asBool = parseBool;

const NO_SHARED_SESSION_CACHE =
  'node has no session cache shared across processes or hosts; workers share session ticket keys instead (ticket-key-file across hosts)';
const OBSOLETE_RING_BUFFER = 'obsolete in Hitch as well; node streams size their own buffers';

/** Recognised but not implemented: validate the value's shape, then ignore it. */
function unimplemented(
  base: OptionBase,
  parse: (item: ScalarItem, text: string) => unknown,
): OptionSpec {
  return scalar({ ...base, implemented: false }, parse, () => undefined);
}

// --- TLS settings: global, or per frontend when inside a frontend block --------------

type TlsKey = keyof TlsSettings;

function setTls<K extends TlsKey>(
  ctx: ApplyContext,
  key: K,
  value: TlsSettings[K] | undefined,
): void {
  if (ctx.frontend) {
    if (value === undefined) delete ctx.frontend.tls[key];
    else ctx.frontend.tls[key] = value;
    return;
  }
  ctx.draft.tls[key] = value ?? DEFAULT_TLS[key];
}

const SSL_OPTION_PROTOS: readonly TlsProtocolName[] = [
  'SSLv3',
  'TLSv1.0',
  'TLSv1.1',
  'TLSv1.2',
  'TLSv1.3',
];
const TLS_OPTION_PROTOS: readonly TlsProtocolName[] = ['TLSv1.0', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'];

/**
 * Hitch: "it is illegal to specify ssl/tls/tls-protos after ssl, tls or tls-protos"
 * in one scope. A later source (the command line after a file) may still override,
 * except the deprecated --ssl/--tls flags, which Hitch refuses over a file's tls-protos.
 */
function selectProtos(ctx: ApplyContext, entry: Entry, protos: readonly TlsProtocolName[]): void {
  const holder = ctx.frontend ?? ctx.draft;
  const previous = holder.protosSelectedBy;
  const file = entry.position.file;
  const deprecatedFlagOverFile =
    previous !== undefined && entry.name !== 'tls-protos' && previous !== file;
  if (previous === file || deprecatedFlagOverFile) {
    throw new ConfigError(
      'UNHITCH_CONFIG_CONFLICT',
      `it is illegal to specify '${entry.name}' after ssl, tls or tls-protos`,
      entry.position,
      'only one of ssl, tls, tls-protos',
    );
  }
  holder.protosSelectedBy = file;
  setTls(ctx, 'tlsProtos', Object.freeze([...protos]));
  const legacy = protos.filter((proto) => LEGACY_PROTOCOLS.has(proto));
  if (legacy.length > 0) {
    warnOnce(
      ctx.draft,
      'legacy-protocols',
      'UNHITCH_CONFIG_LEGACY_PROTOCOL',
      `${formatPosition(entry.position)}: ${legacy.join(', ')} requested; Node's OpenSSL refuses SSLv3 and, at its default security level, TLSv1.0/1.1, so they will not be negotiated`,
    );
  }
}

export function warnOnce(
  draft: ConfigDraft,
  key: string,
  code: UnhitchCode,
  message: string,
): void {
  if (draft.warnedOptions.has(key)) return;
  draft.warnedOptions.add(key);
  draft.warnings.push({ code, message });
}

function deprecatedSwitch(
  name: 'ssl' | 'tls',
  protos: readonly TlsProtocolName[],
  summary: string,
): OptionSpec {
  return scalar(
    {
      name,
      valueType: 'bool',
      scopes: ['global', 'frontend'],
      hitchFlag: true,
      summary,
      sample: 'on',
    },
    asBool,
    (ctx, on, entry) => {
      const where = formatPosition(entry.position);
      if (on) {
        warnOnce(
          ctx.draft,
          `deprecated-${name}`,
          'UNHITCH_CONFIG_DEPRECATED',
          `${where}: '${name}' is deprecated; use tls-protos`,
        );
        selectProtos(ctx, entry, protos);
      } else {
        warnOnce(
          ctx.draft,
          `deprecated-${name}`,
          'UNHITCH_CONFIG_DEPRECATED',
          `${where}: '${name} = off' is deprecated and has no effect`,
        );
      }
    },
  );
}

// --- Proxy modes: four Hitch switches, at most one on ---------------------------------

type ProxyModeName = 'write-ip' | 'write-proxy-v1' | 'write-proxy-v2' | 'proxy-proxy';

function proxyMode(name: string, mode: ProxyModeName, summary: string): OptionSpec {
  return scalar(
    { name, valueType: 'bool', hitchFlag: true, summary, sample: 'on' },
    asBool,
    (ctx, on, entry) => {
      if (on) ctx.draft.proxyModes.set(mode, entry.position);
      else ctx.draft.proxyModes.delete(mode);
    },
  );
}

// --- Repeatable blocks ------------------------------------------------------------------

function applyFrontend(ctx: ApplyContext, entry: Entry): void {
  if (entry.value.kind === 'block') {
    const frontend = newFrontendDraft(entry.position);
    ctx.applyBlock(entry.value.entries, 'frontend', { frontend });
    if (frontend.port === undefined) {
      throw new ConfigError(
        'UNHITCH_CONFIG_MISSING',
        'frontend block has no port',
        entry.position,
        'port = "PORT" inside the block',
      );
    }
    frontend.address = { kind: 'tcp', host: frontend.host, port: frontend.port };
    ctx.draft.frontends.push(frontend);
    return;
  }
  const item = singleItem(entry);
  if (item.text === undefined) return; // Hitch ignores `frontend = ""`
  const spec = parseBracketAddress(item, item.text, {
    wildcard: true,
    allowCert: true,
    minPort: 0,
  });
  const frontend = newFrontendDraft(entry.position);
  frontend.address = spec.address;
  if (spec.certPath !== undefined) {
    frontend.pemFiles.push(
      notePemPosition(
        { certPath: spec.certPath, privateKeyPath: undefined, ocspResponsePath: undefined },
        entry.position,
      ),
    );
  }
  ctx.draft.frontends.push(frontend);
}

function applyPemFile(ctx: ApplyContext, entry: Entry): void {
  const destination = ctx.frontend ? ctx.frontend.pemFiles : ctx.draft.pemFiles;
  if (entry.value.kind === 'block') {
    const pem = newPemDraft(entry.position);
    ctx.applyBlock(entry.value.entries, 'pem-file', { pem });
    if (pem.certPath === undefined) {
      throw new ConfigError(
        'UNHITCH_CONFIG_MISSING',
        'pem-file block has no cert',
        entry.position,
        'cert = "PATH" inside the block',
      );
    }
    destination.push(
      notePemPosition(
        {
          certPath: pem.certPath,
          privateKeyPath: pem.privateKeyPath,
          ocspResponsePath: pem.ocspResponsePath,
          ...(pem.clientVerify === undefined ? {} : { clientVerify: pem.clientVerify }),
          ...(pem.clientVerifyCa === undefined ? {} : { clientVerifyCa: pem.clientVerifyCa }),
          ...(pem.ocspVerifyStaple === undefined ? {} : { ocspVerifyStaple: pem.ocspVerifyStaple }),
        },
        entry.position,
      ),
    );
    return;
  }
  const item = singleItem(entry);
  if (item.text === undefined) return; // Hitch ignores `pem-file = ""`
  destination.push(
    notePemPosition(
      { certPath: item.text, privateKeyPath: undefined, ocspResponsePath: undefined },
      entry.position,
    ),
  );
}

function pemField(ctx: ApplyContext, entry: Entry): PemDraft {
  if (!ctx.pem)
    throw new ConfigError(
      'UNHITCH_CONFIG_UNKNOWN_OPTION',
      `'${entry.name}' is only allowed inside a pem-file block`,
      entry.position,
    );
  return ctx.pem;
}

function frontendField(ctx: ApplyContext, entry: Entry): FrontendDraft {
  if (!ctx.frontend)
    throw new ConfigError(
      'UNHITCH_CONFIG_UNKNOWN_OPTION',
      `'${entry.name}' is only allowed inside a frontend block`,
      entry.position,
    );
  return ctx.frontend;
}

// --- The acme block ---------------------------------------------------------------------

function applyAcme(ctx: ApplyContext, entry: Entry): void {
  if (entry.value.kind !== 'block') {
    const item = singleItem(entry);
    throw new ConfigError(
      'UNHITCH_CONFIG_INVALID_VALUE',
      `'acme' takes a block, not a value`,
      item.position,
      'acme = { domain = "NAME" … }',
    );
  }
  // A second block (another file, the command line) overrides field by field.
  const acme: AcmeDraft = ctx.draft.acme ?? {
    directoryUrl: undefined,
    contact: undefined,
    domains: undefined,
    stateDir: undefined,
    challenge: undefined,
    httpListen: undefined,
    retrySec: undefined,
    position: entry.position,
  };
  acme.position = entry.position;
  // `domain` and `contact` repeat within one block; a later block's list replaces the earlier.
  const before = { domains: acme.domains, contact: acme.contact };
  acme.domains = undefined;
  acme.contact = undefined;
  ctx.applyBlock(entry.value.entries, 'acme', { acme });
  acme.domains ??= before.domains;
  acme.contact ??= before.contact;
  ctx.draft.acme = acme;
}

function acmeField(ctx: ApplyContext, entry: Entry): AcmeDraft {
  if (!ctx.acme)
    throw new ConfigError(
      'UNHITCH_CONFIG_UNKNOWN_OPTION',
      `'${entry.name}' is only allowed inside an acme block`,
      entry.position,
    );
  return ctx.acme;
}

function parseUrl(item: ScalarItem, text: string, schemes: readonly string[]): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return invalid(item, `invalid URL ${JSON.stringify(text)}`, `a ${schemes.join(' or ')} URL`);
  }
  if (!schemes.includes(url.protocol))
    invalid(item, `invalid URL ${JSON.stringify(text)}`, `a ${schemes.join(' or ')} URL`);
  return text;
}

const ACME_CHALLENGES: readonly AcmeChallengeType[] = ['tls-alpn-01', 'http-01'];
const LOG_FORMATS: readonly LogFormat[] = ['auto', 'json', 'pretty'];

const timeout = (item: ScalarItem, text: string) => parseSeconds(item, text, TIMEOUT_RANGE);

const DURATION_UNIT_MS: Readonly<Record<string, number>> = { s: 1_000, m: 60_000, h: 3_600_000 };

/** deny-repeat-offenders = "FAILURES/WINDOW:BAN", durations in s (default), m or h. */
function parseRepeatOffenders(item: ScalarItem, text: string): RepeatOffenderPolicy {
  const match = /^([0-9]+)\/([0-9]+)([smh]?):([0-9]+)([smh]?)$/.exec(text.replace(/\s+/g, ''));
  const wanted = 'FAILURES/WINDOW:BAN with durations in s, m or h, e.g. "5/60s:10m"';
  if (match === null)
    invalid(item, `invalid deny-repeat-offenders ${JSON.stringify(text)}`, wanted);
  const [, failures, window, windowUnit, ban, banUnit] = match as unknown as string[];
  const ms = (value: string | undefined, unit: string | undefined): number =>
    Number(value) * (DURATION_UNIT_MS[unit || 's'] as number);
  const policy = {
    failures: Number(failures),
    windowMs: ms(window, windowUnit),
    banMs: ms(ban, banUnit),
  };
  if (policy.failures < 1 || policy.windowMs < 1 || policy.banMs < 1)
    invalid(item, `deny-repeat-offenders ${JSON.stringify(text)} has a zero`, wanted);
  if (Math.max(policy.windowMs, policy.banMs) > MAX_DURATION_SECONDS * 1000)
    invalid(item, `deny-repeat-offenders ${JSON.stringify(text)} is out of range`, wanted);
  return Object.freeze(policy);
}
/** Linux refuses a TCP_KEEPIDLE above this (and node then silently sends no keepalive). */
const MAX_KEEPALIVE_SECONDS = 32_767;
/**
 * Hitch takes any positive count; each unhitch worker is a node process (some 50 MB), so
 * a typo like 100000 would fork until memory runs out. Beyond the largest CPU counts
 * servers have, more workers than CPUs only adds memory.
 */
const MAX_WORKERS = 1_024;
const WORKERS_LIMIT_WHY = ' (each worker is a process of some 50 MB)';
/** More handshakes in progress than this is no limit (and no more than descriptors allow). */
const MAX_HANDSHAKES = 1_000_000;
const GLOBAL_AND_FRONTEND: readonly OptionScope[] = ['global', 'frontend'];

export const OPTIONS: readonly OptionSpec[] = Object.freeze([
  // --- Listening and certificates ---
  define(
    {
      name: 'frontend',
      valueType: 'frontend',
      repeatable: true,
      short: 'f',
      hitchFlag: true,
      summary: 'listen address [HOST]:PORT[+CERT] or a { host port pem-file … } block',
      sample: '"[*]:8443"',
    },
    applyFrontend,
  ),
  define(
    {
      name: 'pem-file',
      valueType: 'pem-file',
      scopes: GLOBAL_AND_FRONTEND,
      repeatable: true,
      short: false,
      summary: 'certificate PEM (combined) or a { cert private-key ocsp-resp-file } block',
      sample: '"cert.pem"',
    },
    applyPemFile,
  ),
  scalar(
    {
      name: 'host',
      valueType: 'host',
      scopes: ['frontend'],
      summary: 'frontend block: listen host (* = all)',
      sample: '"*"',
    },
    normalizeHost,
    (ctx, host, entry) => {
      frontendField(ctx, entry).host = host;
    },
  ),
  scalar(
    {
      name: 'port',
      valueType: 'port',
      scopes: ['frontend'],
      summary: 'frontend block: listen port',
      sample: '"8443"',
    },
    (item, text) => parsePort(item, text),
    (ctx, port, entry) => {
      frontendField(ctx, entry).port = port;
    },
  ),
  scalar(
    {
      name: 'match-global-certs',
      valueType: 'bool',
      scopes: ['frontend'],
      summary: 'frontend block: also offer the global certificates',
      sample: 'on',
    },
    asBool,
    (ctx, on, entry) => {
      frontendField(ctx, entry).matchGlobalCerts = on ?? false;
    },
  ),
  scalar(
    {
      name: 'cert',
      valueType: 'path',
      scopes: ['pem-file'],
      summary: 'pem-file block: certificate (and key when combined)',
      sample: '"cert.pem"',
    },
    asText,
    (ctx, path, entry) => {
      pemField(ctx, entry).certPath = path;
    },
  ),
  scalar(
    {
      name: 'private-key',
      valueType: 'path',
      scopes: ['pem-file'],
      summary: 'pem-file block: separate private key',
      sample: '"key.pem"',
    },
    asText,
    (ctx, path, entry) => {
      pemField(ctx, entry).privateKeyPath = path;
    },
  ),
  scalar(
    {
      name: 'ocsp-resp-file',
      valueType: 'path',
      scopes: ['pem-file'],
      summary: 'pem-file block: stapled OCSP response file',
      sample: '"ocsp.der"',
    },
    asText,
    (ctx, path, entry) => {
      pemField(ctx, entry).ocspResponsePath = path;
    },
  ),
  scalar(
    {
      name: 'backend',
      valueType: 'backend',
      short: 'b',
      hitchFlag: true,
      summary: 'backend [HOST]:PORT or unix socket path',
      sample: '"[127.0.0.1]:8000"',
    },
    parseBackend,
    (ctx, address) => {
      ctx.draft.settings.backend = address ?? DEFAULT_CONFIG.backend;
    },
  ),

  // --- TLS ---
  define(
    {
      name: 'tls-protos',
      hitchFlag: true,
      valueType: 'tls-protos',
      scopes: GLOBAL_AND_FRONTEND,
      summary: 'enabled protocols: SSLv3 TLSv1.0 TLSv1.1 TLSv1.2 TLSv1.3',
      sample: 'TLSv1.2 TLSv1.3',
    },
    (ctx, entry) => {
      selectProtos(ctx, entry, parseTlsProtos(scalarItems(entry)));
    },
  ),
  deprecatedSwitch('ssl', SSL_OPTION_PROTOS, 'deprecated: enable SSLv3 and every TLS version'),
  deprecatedSwitch('tls', TLS_OPTION_PROTOS, 'deprecated: enable TLSv1.0 to TLSv1.3'),
  scalar(
    {
      name: 'ciphers',
      valueType: 'string',
      scopes: GLOBAL_AND_FRONTEND,
      short: 'c',
      hitchFlag: true,
      summary: 'OpenSSL cipher list (TLS ≤ 1.2)',
      sample: '"EECDH+AESGCM"',
    },
    asText,
    (ctx, value) => setTls(ctx, 'ciphers', value),
  ),
  scalar(
    {
      name: 'ciphersuites',
      valueType: 'string',
      scopes: GLOBAL_AND_FRONTEND,
      summary: 'OpenSSL TLS 1.3 ciphersuites',
      sample: '"TLS_AES_128_GCM_SHA256"',
    },
    asText,
    (ctx, value) => setTls(ctx, 'ciphersuites', value),
  ),
  scalar(
    {
      name: 'prefer-server-ciphers',
      valueType: 'bool',
      scopes: GLOBAL_AND_FRONTEND,
      short: 'O',
      hitchFlag: true,
      summary: 'prefer the server cipher order',
      sample: 'on',
    },
    asBool,
    (ctx, on) => setTls(ctx, 'preferServerCiphers', on),
  ),
  scalar(
    {
      name: 'sni-nomatch-abort',
      valueType: 'bool',
      scopes: GLOBAL_AND_FRONTEND,
      hitchFlag: true,
      summary: 'abort handshakes whose SNI matches no certificate',
      sample: 'on',
    },
    asBool,
    (ctx, on) => setTls(ctx, 'sniNomatchAbort', on),
  ),
  scalar(
    {
      name: 'ecdh-curve',
      valueType: 'string',
      summary: 'ECDH curve list or "auto"',
      sample: '"prime256v1"',
    },
    asText,
    (ctx, value) => {
      ctx.draft.settings.ecdhCurve = value ?? DEFAULT_CONFIG.ecdhCurve;
    },
  ),
  scalar(
    {
      name: 'alpn-protos',
      valueType: 'alpn-protos',
      hitchFlag: true,
      summary:
        'ALPN protocols, comma separated (ALPN only: node has no NPN, which Hitch also offers)',
      sample: '"http/1.1"',
    },
    parseAlpnProtos,
    (ctx, protos, entry) => {
      ctx.draft.settings.alpnProtos = Object.freeze(protos ?? []);
      ctx.draft.alpnPosition = protos ? entry.position : undefined;
    },
  ),

  // --- Data plane ---
  proxyMode('write-ip', 'write-ip', 'write the client IP as raw bytes before the stream'),
  proxyMode('write-proxy', 'write-proxy-v2', 'write a PROXY v2 header (same as write-proxy-v2)'),
  proxyMode('write-proxy-v1', 'write-proxy-v1', 'write a PROXY v1 header'),
  proxyMode('write-proxy-v2', 'write-proxy-v2', 'write a PROXY v2 header'),
  proxyMode('proxy-proxy', 'proxy-proxy', 'pass on a PROXY header received from the client'),
  scalar(
    {
      name: 'backend-connect-timeout',
      valueType: 'seconds',
      hitchFlag: true,
      summary: 'seconds to wait for the backend connection',
      sample: '30',
    },
    timeout,
    (ctx, value) => {
      ctx.draft.settings.backendConnectTimeoutMs =
        value === undefined ? DEFAULT_CONFIG.backendConnectTimeoutMs : value * 1000;
    },
  ),
  scalar(
    {
      name: 'ssl-handshake-timeout',
      valueType: 'seconds',
      hitchFlag: true,
      summary: 'seconds allowed for the TLS handshake (and a proxy-proxy PROXY header)',
      sample: '30',
    },
    timeout,
    (ctx, value) => {
      ctx.draft.settings.sslHandshakeTimeoutMs =
        value === undefined ? DEFAULT_CONFIG.sslHandshakeTimeoutMs : value * 1000;
    },
  ),
  scalar(
    {
      name: 'backlog',
      valueType: 'uint',
      short: 'B',
      hitchFlag: true,
      summary: 'listen backlog',
      sample: '100',
    },
    (item, text) => parseUint(item, text, 0),
    (ctx, value) => {
      ctx.draft.settings.backlog = value ?? DEFAULT_CONFIG.backlog;
    },
  ),
  scalar(
    {
      name: 'keepalive',
      valueType: 'uint',
      short: 'k',
      hitchFlag: true,
      summary: 'TCP keepalive idle seconds (0 = off)',
      sample: '3600',
    },
    (item, text) =>
      parseUint(item, text, 0, MAX_KEEPALIVE_SECONDS, " (Linux's TCP_KEEPIDLE limit)"),
    (ctx, value) => {
      ctx.draft.settings.keepaliveSec = value ?? DEFAULT_CONFIG.keepaliveSec;
    },
  ),
  scalar(
    {
      name: 'recv-bufsize',
      hitchFlag: true,
      valueType: 'uint',
      summary: 'socket receive buffer bytes (0 = OS default)',
      sample: '65536',
    },
    (item, text) => parseUint(item, text, 0),
    (ctx, value) => {
      ctx.draft.settings.recvBufferBytes = value === 0 ? undefined : value;
    },
  ),
  scalar(
    {
      name: 'send-bufsize',
      hitchFlag: true,
      valueType: 'uint',
      summary: 'socket send buffer bytes (0 = OS default)',
      sample: '65536',
    },
    (item, text) => parseUint(item, text, 0),
    (ctx, value) => {
      ctx.draft.settings.sendBufferBytes = value === 0 ? undefined : value;
    },
  ),
  scalar(
    {
      name: 'tcp-fastopen',
      valueType: 'bool',
      summary: 'enable TCP Fast Open on listeners',
      sample: 'on',
    },
    asBool,
    (ctx, on) => {
      ctx.draft.settings.tcpFastOpen = on ?? false;
    },
  ),
  scalar(
    {
      // Hitch's command-line spelling of tcp-fastopen.
      name: 'enable-tcp-fastopen',
      valueType: 'bool',
      hitchFlag: true,
      summary: "same as tcp-fastopen (Hitch's flag name)",
      sample: 'on',
    },
    asBool,
    (ctx, on) => {
      ctx.draft.settings.tcpFastOpen = on ?? false;
    },
  ),

  // --- Process ---
  scalar(
    {
      name: 'workers',
      valueType: 'uint',
      short: 'n',
      hitchFlag: true,
      summary: `worker processes (1..${MAX_WORKERS}), or auto: one per CPU (Hitch 1.8)`,
      sample: '2',
    },
    // Hitch 1.8's `workers = auto`: the default here already, one worker per usable CPU.
    (item, text) =>
      text === 'auto' ? undefined : parseUint(item, text, 1, MAX_WORKERS, WORKERS_LIMIT_WHY),
    (ctx, value) => {
      ctx.draft.settings.workers = value;
    },
  ),
  scalar(
    {
      name: 'daemon',
      valueType: 'bool',
      hitchFlag: true,
      summary: 'detach into the background; exit 0 once every worker listens',
      sample: 'off',
    },
    asBool,
    (ctx, on) => {
      ctx.draft.settings.daemon = on ?? false;
    },
  ),
  scalar(
    {
      name: 'user',
      valueType: 'string',
      short: 'u',
      hitchFlag: true,
      summary: 'drop privileges to this user',
      sample: '"nobody"',
    },
    asText,
    (ctx, value) => {
      ctx.draft.settings.user = value;
    },
  ),
  scalar(
    {
      name: 'group',
      valueType: 'string',
      short: 'g',
      hitchFlag: true,
      summary: 'drop privileges to this group',
      sample: '"nogroup"',
    },
    asText,
    (ctx, value) => {
      ctx.draft.settings.group = value;
    },
  ),
  scalar(
    {
      name: 'chroot',
      valueType: 'path',
      short: 'r',
      hitchFlag: true,
      summary: 'chroot directory',
      sample: '"/var/empty"',
    },
    asText,
    (ctx, value) => {
      ctx.draft.settings.chroot = value;
    },
  ),
  scalar(
    {
      name: 'pidfile',
      valueType: 'path',
      short: 'p',
      hitchFlag: true,
      summary: 'write the primary PID here',
      sample: '"/run/unhitch.pid"',
    },
    asText,
    (ctx, value) => {
      ctx.draft.settings.pidfile = value;
    },
  ),
  scalar(
    {
      name: 'dbg-listen',
      valueType: 'path',
      hitchFlag: true,
      summary: 'write every listening address (ip:port, one a line) here after each (re)start',
      sample: '"/run/unhitch.listen"',
    },
    asText,
    (ctx, value) => {
      ctx.draft.settings.dbgListen = value;
    },
  ),
  scalar(
    {
      name: 'client',
      valueType: 'bool',
      hitchFlag: true,
      summary: "Hitch's client mode (clear text in, TLS to the backend): refused when on",
      sample: 'off',
    },
    asBool,
    (_ctx, on, entry) => {
      // Ignoring it would run a TLS server where a TLS client was asked for.
      if (on)
        throw new ConfigError(
          'UNHITCH_CONFIG_INVALID_VALUE',
          'client mode (clear text in, TLS towards the backend) is not implemented by unhitch',
          entry.position,
          'client = off',
        );
    },
  ),

  // --- Logging ---
  scalar(
    {
      name: 'quiet',
      valueType: 'bool',
      short: 'q',
      hitchFlag: true,
      summary: 'log errors only',
      sample: 'on',
    },
    asBool,
    (ctx, on) => {
      ctx.draft.settings.quiet = on ?? false;
    },
  ),
  scalar(
    {
      name: 'syslog',
      valueType: 'bool',
      short: 's',
      hitchFlag: true,
      summary: 'log to syslog',
      sample: 'on',
    },
    asBool,
    (ctx, on) => {
      ctx.draft.settings.syslog = on ?? false;
    },
  ),
  scalar(
    {
      name: 'log-level',
      valueType: 'log-level',
      short: 'L',
      hitchFlag: true,
      summary: 'Hitch 0/1/2 (errors, info, debug) or a pino level name',
      sample: '1',
    },
    parseLogLevel,
    (ctx, level) => {
      ctx.draft.settings.logLevel = level ?? DEFAULT_CONFIG.logLevel;
    },
  ),
  scalar(
    {
      name: 'log-filename',
      valueType: 'path',
      short: 'l',
      hitchFlag: true,
      summary: 'log to this file instead of stdout',
      sample: '"/var/log/unhitch.log"',
    },
    asText,
    (ctx, value) => {
      ctx.draft.settings.logFilename = value;
    },
  ),

  // --- unhitch extensions ---
  scalar(
    {
      name: 'pin-workers',
      valueType: 'bool',
      extension: true,
      summary: 'pin worker i to the i-th allowed CPU (on/off)',
      sample: 'on',
    },
    asBool,
    (ctx, on) => {
      ctx.draft.settings.pinWorkers = on ?? DEFAULT_CONFIG.pinWorkers;
    },
  ),
  scalar(
    {
      name: 'drain-timeout',
      valueType: 'seconds',
      extension: true,
      summary: 'seconds to drain connections on SIGTERM (0 = close them at once)',
      sample: '30',
    },
    (item, text) => parseSeconds(item, text, { min: 0.001, zero: 'close at once' }),
    (ctx, value) => {
      ctx.draft.settings.drainTimeoutMs =
        value === undefined ? DEFAULT_CONFIG.drainTimeoutMs : value * 1000;
    },
  ),
  scalar(
    {
      name: 'reload-drain-timeout',
      valueType: 'seconds',
      extension: true,
      summary:
        'seconds an old generation keeps its connections after a reload (SIGHUP) before they are closed',
      sample: '3600',
    },
    (item, text) => parseSeconds(item, text, { min: 0.001, zero: 'close at once' }),
    (ctx, value) => {
      ctx.draft.settings.reloadDrainTimeoutMs =
        value === undefined ? DEFAULT_CONFIG.reloadDrainTimeoutMs : value * 1000;
    },
  ),
  scalar(
    {
      name: 'ticket-key-file',
      valueType: 'path',
      extension: true,
      summary: 'TLS session ticket key file (shared across workers/hosts)',
      sample: '"tickets.key"',
    },
    asText,
    (ctx, value) => {
      ctx.draft.settings.ticketKeyFile = value;
    },
  ),
  scalar(
    {
      name: 'ticket-rotation',
      valueType: 'seconds',
      extension: true,
      summary: 'seconds between session ticket key rotations (0 = never)',
      sample: '43200',
    },
    (item, text) => parseSeconds(item, text, { min: 1, zero: 'never' }),
    (ctx, value) => {
      ctx.draft.settings.ticketRotationSec = value ?? DEFAULT_CONFIG.ticketRotationSec;
    },
  ),
  scalar(
    {
      name: 'forwarded-for',
      valueType: 'bool',
      extension: true,
      summary: 'add X-Forwarded-For/-Proto to every HTTP request until an upgrade (on/off)',
      sample: 'on',
    },
    asBool,
    (ctx, on) => {
      ctx.draft.settings.forwardedFor = on ?? false;
    },
  ),
  scalar(
    {
      name: 'request-head-timeout',
      valueType: 'seconds',
      extension: true,
      summary:
        'with forwarded-for: seconds for a request head to arrive, from the backend connection (the first head) or its first byte (the next ones); else 408 and close',
      sample: '30',
    },
    timeout,
    (ctx, value) => {
      ctx.draft.settings.requestHeadTimeoutMs =
        value === undefined ? DEFAULT_CONFIG.requestHeadTimeoutMs : value * 1000;
    },
  ),
  scalar(
    {
      name: 'idle-timeout',
      valueType: 'seconds',
      extension: true,
      summary:
        "seconds a connection may carry no byte either way before it is closed (0 = never); set it above the tracker's announce interval",
      sample: '600',
    },
    (item, text) => parseSeconds(item, text, { min: 1, zero: 'never' }),
    (ctx, value) => {
      ctx.draft.settings.idleTimeoutMs =
        value === undefined ? DEFAULT_CONFIG.idleTimeoutMs : value * 1000;
    },
  ),
  scalar(
    {
      name: 'max-handshakes',
      valueType: 'uint',
      extension: true,
      summary:
        'handshakes in progress per worker (0 = no limit); at the limit the worker stops accepting and new clients wait in the listen backlog',
      sample: '256',
    },
    (item, text) => parseUint(item, text, 0, MAX_HANDSHAKES),
    (ctx, value) => {
      ctx.draft.settings.maxHandshakes = value ?? DEFAULT_CONFIG.maxHandshakes;
    },
  ),
  define(
    {
      name: 'backend-source-addresses',
      valueType: 'address-list',
      extension: true,
      summary: 'local addresses for backend connections, comma/space separated',
      sample: '"127.0.0.2, 127.0.0.3"',
    },
    (ctx, entry) => {
      ctx.draft.settings.backendSourceAddresses = Object.freeze(
        parseAddressList(scalarItems(entry)),
      );
    },
  ),
  // --- Per-client limits (issue 20): checked at accept, per worker ---
  scalar(
    {
      name: 'per-ip-max-connections',
      valueType: 'uint',
      extension: true,
      summary:
        'open connections per client address and worker; one more is closed at accept, before TLS (0 = off)',
      sample: '64',
    },
    (item, text) => parseUint(item, text, 0),
    (ctx, value) => {
      ctx.draft.settings.perIpMaxConnections = value ?? DEFAULT_CONFIG.perIpMaxConnections;
    },
  ),
  scalar(
    {
      name: 'per-ip-ipv6-prefix',
      valueType: 'uint',
      extension: true,
      summary: 'IPv6 clients count as one address per prefix of this length',
      sample: '64',
    },
    (item, text) => parseUint(item, text, 1, 128),
    (ctx, value) => {
      ctx.draft.settings.perIpIpv6Prefix = value ?? DEFAULT_CONFIG.perIpIpv6Prefix;
    },
  ),
  scalar(
    {
      name: 'per-ip-connection-rate',
      valueType: 'uint',
      extension: true,
      summary:
        'new connections per second per client address and worker, bursts of as many; more are closed at accept (0 = off)',
      sample: '20',
    },
    (item, text) => parseUint(item, text, 0),
    (ctx, value) => {
      ctx.draft.settings.perIpConnectionRate = value ?? DEFAULT_CONFIG.perIpConnectionRate;
    },
  ),
  scalar(
    {
      name: 'deny-file',
      valueType: 'path',
      extension: true,
      summary:
        'addresses and CIDR ranges (IPv4, IPv6) closed at accept, one per line, # comments; re-read on SIGHUP',
      sample: '"/etc/unhitch/deny.txt"',
    },
    asText,
    (ctx, path) => {
      // Read with the certificates (ops/preflight.ts): at start, on --test, on reload.
      ctx.draft.settings.denyFile = path;
    },
  ),
  scalar(
    {
      name: 'deny-repeat-offenders',
      valueType: 'string',
      extension: true,
      summary:
        'FAILURES/WINDOW:BAN, e.g. "5/60s:10m": a client that fails that many handshakes (or sends non-TLS bytes) within WINDOW is closed at accept for BAN, in every worker',
      sample: '"5/60s:10m"',
    },
    parseRepeatOffenders,
    (ctx, policy) => {
      ctx.draft.settings.denyRepeatOffenders = policy;
    },
  ),
  scalar(
    {
      name: 'metrics',
      valueType: 'address',
      extension: true,
      summary: 'Prometheus endpoint HOST:PORT',
      sample: '"127.0.0.1:9100"',
    },
    parseHostPort,
    (ctx, address) => {
      ctx.draft.settings.metrics = address;
    },
  ),

  // --- ACME (unhitch extension): certificates obtained and renewed by the primary ---
  define(
    {
      name: 'acme',
      valueType: 'acme',
      short: false,
      extension: true,
      summary: 'obtain and renew certificates from an ACME CA: acme = { domain = … }',
      sample: '{ domain = "tracker.example.com" }',
    },
    applyAcme,
  ),
  scalar(
    {
      name: 'directory',
      valueType: 'url',
      scopes: ['acme'],
      extension: true,
      summary: "the ACME CA's directory URL",
      sample: '"https://acme-v02.api.letsencrypt.org/directory"',
    },
    (item, text) => parseUrl(item, text, ['https:', 'http:']),
    (ctx, value, entry) => {
      acmeField(ctx, entry).directoryUrl = value;
    },
  ),
  scalar(
    {
      name: 'contact',
      valueType: 'url',
      scopes: ['acme'],
      repeatable: true,
      extension: true,
      summary: 'ACME account contact, e.g. mailto:ops@example.com (repeatable)',
      sample: '"mailto:ops@example.com"',
    },
    (item, text) => parseUrl(item, text, ['mailto:']),
    (ctx, value, entry) => {
      const acme = acmeField(ctx, entry);
      if (value !== undefined) acme.contact = [...(acme.contact ?? []), value];
    },
  ),
  scalar(
    {
      name: 'domain',
      valueType: 'dns-name',
      scopes: ['acme'],
      repeatable: true,
      extension: true,
      summary: 'a DNS name the ACME certificate covers (repeatable)',
      sample: '"tracker.example.com"',
    },
    parseDnsName,
    (ctx, value, entry) => {
      const acme = acmeField(ctx, entry);
      if (value !== undefined && !(acme.domains ?? []).includes(value))
        acme.domains = [...(acme.domains ?? []), value];
    },
  ),
  scalar(
    {
      name: 'state-dir',
      valueType: 'path',
      scopes: ['acme'],
      extension: true,
      summary: 'directory of the ACME account key and certificates',
      sample: '"/var/lib/unhitch/acme"',
    },
    asText,
    (ctx, value, entry) => {
      acmeField(ctx, entry).stateDir = value;
    },
  ),
  scalar(
    {
      name: 'challenge',
      valueType: 'acme-challenge',
      scopes: ['acme'],
      extension: true,
      summary: 'the challenge type: tls-alpn-01 (answered by the frontends) or http-01',
      sample: '"tls-alpn-01"',
    },
    (item, text) => {
      const type = ACME_CHALLENGES.find((name) => name === text.toLowerCase());
      if (type === undefined)
        invalid(item, `invalid challenge ${JSON.stringify(text)}`, ACME_CHALLENGES.join(' or '));
      return type;
    },
    (ctx, value, entry) => {
      acmeField(ctx, entry).challenge = value;
    },
  ),
  scalar(
    {
      name: 'http-listen',
      valueType: 'address',
      scopes: ['acme'],
      extension: true,
      summary: 'http-01: plain-HTTP address the primary answers challenges on, e.g. "[*]:80"',
      sample: '"[*]:80"',
    },
    parseHostPort,
    (ctx, value, entry) => {
      acmeField(ctx, entry).httpListen = value;
    },
  ),
  scalar(
    {
      name: 'retry',
      valueType: 'seconds',
      scopes: ['acme'],
      extension: true,
      summary: 'first retry after a failed order; doubles up to an hour',
      sample: '60',
    },
    (item, text) => parseSeconds(item, text, { min: 1 }),
    (ctx, value, entry) => {
      acmeField(ctx, entry).retrySec = value;
    },
  ),

  // --- Recognised, not implemented (one warning each) ---
  scalar(
    {
      name: 'log-format',
      valueType: 'log-format',
      extension: true,
      summary:
        'log lines as JSON, as one readable line each (pretty), or auto: pretty on a terminal',
      sample: 'json',
    },
    (item, text) => {
      const format = LOG_FORMATS.find((name) => name === text.toLowerCase());
      if (format === undefined)
        invalid(item, `invalid log format ${JSON.stringify(text)}`, LOG_FORMATS.join(', '));
      return format;
    },
    (ctx, format) => {
      ctx.draft.settings.logFormat = format ?? DEFAULT_CONFIG.logFormat;
    },
  ),
  unimplemented(
    {
      name: 'ssl-engine',
      valueType: 'string',
      short: 'e',
      hitchFlag: true,
      summary: 'OpenSSL engine',
      sample: '"rdrand"',
      notCarriedOutBecause:
        "node's OpenSSL 3 build has no ENGINE API (engines gave way to providers), so no engine can be loaded",
    },
    asText,
  ),
  scalar(
    {
      name: 'syslog-facility',
      valueType: 'string',
      hitchFlag: true,
      summary: 'syslog facility (daemon, local0…local7, mail, …)',
      sample: '"daemon"',
    },
    parseSyslogFacility,
    (ctx, facility) => {
      ctx.draft.settings.syslogFacility = facility ?? DEFAULT_CONFIG.syslogFacility;
    },
  ),
  scalar(
    {
      name: 'proxy-tlv',
      valueType: 'bool',
      summary: 'PROXY v2: send the SSL TLV (version, cipher, client certificate result)',
      sample: 'on',
    },
    asBool,
    (ctx, on) => {
      ctx.draft.settings.proxyTlv = on ?? DEFAULT_CONFIG.proxyTlv;
    },
  ),
  scalar(
    {
      name: 'proxy-authority',
      valueType: 'bool',
      summary: 'PROXY v2: send the SNI name as the authority TLV',
      sample: 'on',
    },
    asBool,
    (ctx, on) => {
      ctx.draft.settings.proxyAuthority = on ?? DEFAULT_CONFIG.proxyAuthority;
    },
  ),
  scalar(
    {
      name: 'proxy-client-cert',
      valueType: 'bool',
      summary: 'PROXY v2: send the verified client certificate (PEM) as TLV 0xE0',
      sample: 'on',
    },
    asBool,
    (ctx, on) => {
      ctx.draft.settings.proxyClientCert = on ?? DEFAULT_CONFIG.proxyClientCert;
    },
  ),
  scalar(
    {
      name: 'client-verify',
      valueType: 'client-verify',
      scopes: ['global', 'frontend', 'pem-file'],
      summary: 'client certificates: none, optional, required (needs client-verify-ca)',
      sample: 'required',
    },
    parseClientVerify,
    (ctx, mode) => {
      if (ctx.pem) ctx.pem.clientVerify = mode;
      else setTls(ctx, 'clientVerify', mode);
    },
  ),
  scalar(
    {
      name: 'client-verify-ca',
      valueType: 'path',
      scopes: ['global', 'frontend', 'pem-file'],
      summary: 'PEM bundle of the CAs client certificates must chain to',
      sample: '"client-ca.pem"',
    },
    asText,
    (ctx, path) => {
      if (ctx.pem) ctx.pem.clientVerifyCa = path;
      else setTls(ctx, 'clientVerifyCa', path);
    },
  ),
  scalar(
    {
      name: 'ocsp-dir',
      valueType: 'path',
      short: 'o',
      hitchFlag: true,
      summary: 'OCSP responses fetched for stapling are cached here ("" = no fetching)',
      sample: '"/var/lib/hitch"',
    },
    asText,
    (ctx, value) => {
      ctx.draft.settings.ocspDir = value;
    },
  ),
  scalar(
    {
      name: 'ocsp-connect-tmo',
      valueType: 'seconds',
      summary: 'seconds to connect to the OCSP responder',
      sample: '4',
    },
    timeout,
    (ctx, value) => {
      ctx.draft.settings.ocspConnectTimeoutMs =
        value === undefined ? DEFAULT_CONFIG.ocspConnectTimeoutMs : value * 1000;
    },
  ),
  scalar(
    {
      name: 'ocsp-resp-tmo',
      valueType: 'seconds',
      summary: 'seconds to wait for the OCSP response',
      sample: '10',
    },
    timeout,
    (ctx, value) => {
      ctx.draft.settings.ocspResponseTimeoutMs =
        value === undefined ? DEFAULT_CONFIG.ocspResponseTimeoutMs : value * 1000;
    },
  ),
  scalar(
    {
      name: 'ocsp-refresh-interval',
      valueType: 'seconds',
      summary: 'seconds between OCSP fetches for responses without nextUpdate',
      sample: '1800',
    },
    timeout,
    (ctx, value) => {
      ctx.draft.settings.ocspRefreshIntervalMs =
        value === undefined ? DEFAULT_CONFIG.ocspRefreshIntervalMs : value * 1000;
    },
  ),
  scalar(
    {
      name: 'ocsp-verify-staple',
      valueType: 'bool',
      scopes: ['global', 'pem-file'],
      summary: 'staple only OCSP responses whose signer chains to the CA store (SSL_CERT_FILE)',
      sample: 'on',
    },
    asBool,
    (ctx, on) => {
      if (ctx.pem) ctx.pem.ocspVerifyStaple = on;
      else ctx.draft.settings.ocspVerifyStaple = on ?? false;
    },
  ),
  scalar(
    {
      name: 'pem-dir',
      valueType: 'path',
      summary: 'load every certificate file in this directory (re-read on SIGHUP)',
      sample: '"/etc/hitch/cert.d"',
    },
    asText,
    (ctx, value) => {
      ctx.draft.settings.pemDir = value;
    },
  ),
  scalar(
    {
      name: 'pem-dir-glob',
      valueType: 'string',
      summary: 'only pem-dir files whose name matches this glob',
      sample: '"*.pem"',
    },
    asText,
    (ctx, value) => {
      ctx.draft.settings.pemDirGlob = value;
    },
  ),
  unimplemented(
    {
      name: 'session-cache',
      valueType: 'uint',
      short: 'C',
      hitchFlag: true,
      summary: 'shared session cache entries',
      sample: '0',
      notCarriedOutBecause: NO_SHARED_SESSION_CACHE,
    },
    (item, text) => parseUint(item, text, 0),
  ),
  unimplemented(
    {
      name: 'shared-cache-listen',
      valueType: 'string',
      short: 'U',
      hitchFlag: true,
      summary: 'shared cache update listener',
      sample: '"[*]:8888"',
      notCarriedOutBecause: NO_SHARED_SESSION_CACHE,
    },
    asText,
  ),
  unimplemented(
    {
      name: 'shared-cache-peer',
      valueType: 'string',
      repeatable: true,
      short: 'P',
      hitchFlag: true,
      summary: 'shared cache update peer',
      sample: '"[10.0.0.2]:8888"',
      notCarriedOutBecause: NO_SHARED_SESSION_CACHE,
    },
    asText,
  ),
  unimplemented(
    {
      name: 'shared-cache-if',
      valueType: 'string',
      short: 'M',
      hitchFlag: true,
      summary: 'shared cache multicast interface[,ttl]',
      sample: '"eth0,3"',
      notCarriedOutBecause: NO_SHARED_SESSION_CACHE,
    },
    asText,
  ),
  unimplemented(
    {
      name: 'ring-slots',
      valueType: 'uint',
      summary: 'obsolete ring buffer slots',
      sample: '0',
      notCarriedOutBecause: OBSOLETE_RING_BUFFER,
    },
    (item, text) => parseUint(item, text, 0),
  ),
  unimplemented(
    {
      name: 'ring-data-len',
      valueType: 'uint',
      summary: 'obsolete ring buffer data length',
      sample: '0',
      notCarriedOutBecause: OBSOLETE_RING_BUFFER,
    },
    (item, text) => parseUint(item, text, 0),
  ),
  scalar(
    {
      name: 'backend-refresh',
      valueType: 'uint',
      short: 'R',
      hitchFlag: true,
      summary: 'seconds between lookups of a backend given by name (0 = only at start)',
      sample: '30',
    },
    (item, text) => parseUint(item, text, 0),
    (ctx, value) => {
      ctx.draft.settings.backendRefreshSec = value ?? DEFAULT_CONFIG.backendRefreshSec;
    },
  ),
]);

export const OPTIONS_BY_NAME: ReadonlyMap<string, OptionSpec> = new Map(
  OPTIONS.map((spec) => [spec.name, spec]),
);
