/**
 * Entries → ProxyConfig. Entries are applied in order onto a draft (later wins, like
 * Hitch); `finalizeDraft` then applies the cross-option rules and freezes the result.
 */

import { ipText, parseIp } from '../../net/ip.js';
import { ConfigError, type SourcePosition } from '../errors.js';
import {
  type AcmeConfig,
  DEFAULT_ACME,
  DEFAULT_FRONTEND_ADDRESS,
  type FrontendConfig,
  type PemFileConfig,
  type ProxyConfig,
  type ProxyProtocolMode,
  type TcpAddress,
} from '../model.js';
import { notePemPosition, pemPosition } from '../pem-positions.js';
import { type AcmeDraft, type ConfigDraft, formatPosition, newFrontendDraft } from './draft.js';
import type { Entry } from './entry.js';
import {
  type ApplyContext,
  type BlockTarget,
  OPTIONS_BY_NAME,
  type OptionScope,
  warnOnce,
} from './table.js';

const SCOPE_PLACE: Record<OptionScope, string> = {
  global: 'at the top level',
  frontend: 'inside a frontend block',
  'pem-file': 'inside a pem-file block',
  acme: 'inside the acme block',
};

export function applyEntries(
  draft: ConfigDraft,
  entries: readonly Entry[],
  scope: OptionScope = 'global',
  target: BlockTarget = {},
): void {
  const ctx: ApplyContext = {
    draft,
    frontend: target.frontend,
    pem: target.pem,
    acme: target.acme,
    applyBlock: (inner, innerScope, innerTarget) =>
      applyEntries(draft, inner, innerScope, innerTarget),
  };
  for (const entry of entries) {
    const spec = OPTIONS_BY_NAME.get(entry.name);
    if (!spec) {
      throw new ConfigError(
        'UNHITCH_CONFIG_UNKNOWN_OPTION',
        `unknown option '${entry.name}'`,
        entry.position,
        'a Hitch or unhitch option name',
      );
    }
    if (!spec.scopes.includes(scope)) {
      const allowed = spec.scopes.map((s) => SCOPE_PLACE[s]).join(' or ');
      throw new ConfigError(
        'UNHITCH_CONFIG_UNKNOWN_OPTION',
        `option '${entry.name}' is not allowed ${SCOPE_PLACE[scope]}`,
        entry.position,
        `'${entry.name}' only ${allowed}`,
      );
    }
    spec.apply(ctx, entry); // validates the value even when unimplemented
    if (!spec.implemented) {
      warnOnce(
        draft,
        `unimplemented-${spec.name}`,
        'UNHITCH_CONFIG_UNIMPLEMENTED',
        `${formatPosition(entry.position)}: option '${spec.name}' is recognised but not implemented by unhitch; ignored${spec.notCarriedOutBecause === undefined ? '' : ` (${spec.notCarriedOutBecause})`}`,
      );
    }
  }
}

const PROXY_MODE_FOR: Record<string, ProxyProtocolMode> = {
  'write-proxy-v1': 'v1',
  'write-proxy-v2': 'v2',
};

/** Cross-option rules (Hitch's config_parse_cli tail), defaults, and the frozen model. */
export function finalizeDraft(draft: ConfigDraft): ProxyConfig {
  const modes = [...draft.proxyModes.entries()];
  const lastMode = modes[modes.length - 1];
  if (modes.length >= 2 && lastMode) {
    throw new ConfigError(
      'UNHITCH_CONFIG_CONFLICT',
      `write-ip, write-proxy-v1, write-proxy-v2 and proxy-proxy are mutually exclusive (${modes.map(([name]) => name).join(' and ')} are set)`,
      lastMode[1],
      'at most one of them',
    );
  }
  const proxyProtocol: ProxyProtocolMode = lastMode
    ? (PROXY_MODE_FOR[lastMode[0]] ?? 'off')
    : 'off';
  const settings = { ...draft.settings };
  // Hitch 1.7.1 dropped its refusal of this (1.7.2 starts silently); a drop-in accepts the
  // file, and says once what the operator gives up.
  if (settings.alpnProtos.length > 1 && proxyProtocol !== 'v2' && draft.alpnPosition) {
    warnOnce(
      draft,
      'alpn-without-proxy-v2',
      'UNHITCH_CONFIG_ALPN_UNSEEN',
      `${formatPosition(draft.alpnPosition)}: alpn-protos names more than one protocol but write-proxy-v2 is off, so the backend cannot learn which one was chosen`,
    );
  }
  // Not stud's "daemon implies syslog and quiet": Hitch 1.7 sends nothing to syslog
  // unless `syslog` is on, and warns when a daemon has no log destination at all.
  const globalTls = Object.freeze({ ...draft.tls });
  const frontendDrafts =
    draft.frontends.length > 0
      ? draft.frontends
      : [
          {
            ...newFrontendDraft({ file: settings.source, line: 0, column: 0 }),
            address: DEFAULT_FRONTEND_ADDRESS,
          },
        ];
  const usesDefaultFrontend = draft.frontends.length === 0;
  const frontends: FrontendConfig[] = frontendDrafts.map((fd) => {
    const address = fd.address ?? DEFAULT_FRONTEND_ADDRESS;
    return Object.freeze({
      ...globalTls,
      ...fd.tls,
      address: Object.freeze({ ...address }),
      pemFiles: freezeAll(fd.pemFiles),
      matchGlobalCerts: fd.matchGlobalCerts,
    });
  });
  refuseRedundantFrontends(frontends, frontendDrafts);
  const acme = draft.acme === undefined ? undefined : finalizeAcme(draft.acme);
  // pem-dir's files count as global pem-files; whether the directory holds any is known
  // only when certificates load (tls/pem-dir.ts), which --test and every reload run too.
  // So do ACME's: stored, or a placeholder until the first is obtained (tls/acme-store.ts).
  if (draft.pemFiles.length === 0 && settings.pemDir === undefined && acme === undefined) {
    frontendDrafts.forEach((fd, index) => {
      if (fd.pemFiles.length > 0) return;
      const address = frontends[index]?.address ?? DEFAULT_FRONTEND_ADDRESS;
      throw new ConfigError(
        'UNHITCH_CONFIG_MISSING',
        `no certificate for frontend [${address.host ?? '*'}]:${address.port}`,
        usesDefaultFrontend ? undefined : fd.position,
        'a pem-file option, a pem-file in the frontend block, pem-dir, or a PEM file argument',
      );
    });
  }
  return Object.freeze({
    ...settings,
    proxyProtocol,
    writeIp: draft.proxyModes.has('write-ip'),
    proxyProxy: draft.proxyModes.has('proxy-proxy'),
    frontends: Object.freeze(frontends),
    pemFiles: freezeAll(draft.pemFiles),
    tls: globalTls,
    acme,
  });
}

function finalizeAcme(draft: AcmeDraft): AcmeConfig {
  const domains = draft.domains ?? [];
  if (domains.length === 0) {
    throw new ConfigError(
      'UNHITCH_CONFIG_MISSING',
      'acme block names no domain',
      draft.position,
      'domain = "NAME" inside the acme block (or --acme-domain=NAME)',
    );
  }
  const challenge = draft.challenge ?? DEFAULT_ACME.challenge;
  if (challenge === 'http-01' && draft.httpListen === undefined) {
    throw new ConfigError(
      'UNHITCH_CONFIG_MISSING',
      'acme challenge http-01 needs a plain-HTTP listener',
      draft.position,
      'http-listen = "[*]:80" inside the acme block',
    );
  }
  return Object.freeze({
    directoryUrl: draft.directoryUrl ?? DEFAULT_ACME.directoryUrl,
    contact: Object.freeze([...(draft.contact ?? DEFAULT_ACME.contact)]),
    domains: Object.freeze([...domains]),
    stateDir: draft.stateDir ?? DEFAULT_ACME.stateDir,
    challenge,
    httpListen: draft.httpListen === undefined ? undefined : Object.freeze({ ...draft.httpListen }),
    retrySec: draft.retrySec ?? DEFAULT_ACME.retrySec,
  });
}

/**
 * The socket address a frontend binds, as one string: `[*]` and `[::]` are the same
 * dual-stack socket here, and an IPv6 address has one spelling (`[0:0::1]` is `[::1]`).
 */
function bindKey(address: TcpAddress): string {
  const host = address.host ?? '::';
  const ip = parseIp(host);
  return `[${ip === undefined ? host.toLowerCase() : ipText(ip)}]:${address.port}`;
}

/**
 * Hitch refuses a second frontend with the same IP and port ("Redundant frontend"). It
 * compares the text; here the address is compared, so `[::1]` and `[0:0::1]` collide too
 * (with SO_REUSEPORT both would bind and split the connections between them).
 */
function refuseRedundantFrontends(
  frontends: readonly FrontendConfig[],
  drafts: readonly { readonly position: SourcePosition }[],
): void {
  const seen = new Map<string, SourcePosition>();
  frontends.forEach((frontend, index) => {
    const key = bindKey(frontend.address);
    const position = drafts[index]?.position;
    const first = seen.get(key);
    if (first !== undefined) {
      const host = frontend.address.host ?? '*';
      throw new ConfigError(
        'UNHITCH_CONFIG_CONFLICT',
        `redundant frontend [${host}]:${frontend.address.port} (matching IP and port): the same address as the frontend at ${formatPosition(first)}`,
        position,
        'each listening address once',
      );
    }
    if (position !== undefined) seen.set(key, position);
  });
}

function freezeAll(pems: readonly PemFileConfig[]): readonly PemFileConfig[] {
  return Object.freeze(
    pems.map((pem) => notePemPosition(Object.freeze({ ...pem }), pemPosition(pem))),
  );
}
