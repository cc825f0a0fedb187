/**
 * The mutable configuration being built while entries are applied in order. Only
 * apply.ts (finalizeDraft) turns it into the frozen `ProxyConfig`.
 */
import type { UnhitchCode } from '../../errors.js';
import type { SourcePosition } from '../errors.js';
import {
  type AcmeChallengeType,
  type ClientVerifyMode,
  DEFAULT_CONFIG,
  DEFAULT_TLS,
  type PemFileConfig,
  type ProxyConfig,
  type TcpAddress,
  type TlsSettings,
} from '../model.js';

export interface ConfigWarning {
  readonly code: UnhitchCode;
  readonly message: string;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

export type ScalarSettings = Mutable<
  Omit<ProxyConfig, 'frontends' | 'pemFiles' | 'tls' | 'proxyProtocol' | 'acme'>
>;

export interface FrontendDraft {
  address: TcpAddress | undefined;
  /** Block form collects host and port separately. */
  host: string | undefined;
  port: number | undefined;
  readonly pemFiles: PemFileConfig[];
  /** Only what this frontend sets; the rest is inherited from the global settings. */
  readonly tls: Partial<Mutable<TlsSettings>>;
  protosSelectedBy: string | undefined;
  matchGlobalCerts: boolean;
  readonly position: SourcePosition;
}

export interface PemDraft {
  certPath: string | undefined;
  privateKeyPath: string | undefined;
  ocspResponsePath: string | undefined;
  clientVerify: ClientVerifyMode | undefined;
  clientVerifyCa: string | undefined;
  ocspVerifyStaple: boolean | undefined;
  readonly position: SourcePosition;
}

/** The acme block's settings so far; a later block or flag overrides field by field. */
export interface AcmeDraft {
  directoryUrl: string | undefined;
  contact: string[] | undefined;
  domains: string[] | undefined;
  stateDir: string | undefined;
  challenge: AcmeChallengeType | undefined;
  httpListen: TcpAddress | undefined;
  retrySec: number | undefined;
  /** Where the (last) acme block began, for errors about the block as a whole. */
  position: SourcePosition;
}

export interface ConfigDraft {
  readonly settings: ScalarSettings;
  readonly tls: Mutable<TlsSettings>;
  readonly frontends: FrontendDraft[];
  readonly pemFiles: PemFileConfig[];
  /** Which of ssl/tls/tls-protos chose the global protocols (Hitch allows one). */
  protosSelectedBy: string | undefined;
  /** Hitch keeps these four apart and refuses more than one; remember where each was set. */
  readonly proxyModes: Map<
    'write-ip' | 'write-proxy-v1' | 'write-proxy-v2' | 'proxy-proxy',
    SourcePosition
  >;
  alpnPosition: SourcePosition | undefined;
  acme: AcmeDraft | undefined;
  readonly warnings: ConfigWarning[];
  /** Options already warned about as unimplemented: exactly one warning each. */
  readonly warnedOptions: Set<string>;
}

export function newDraft(source: string): ConfigDraft {
  const {
    frontends: _f,
    pemFiles: _p,
    tls: _t,
    proxyProtocol: _m,
    acme: _a,
    ...settings
  } = DEFAULT_CONFIG;
  return {
    settings: { ...settings, source },
    tls: { ...DEFAULT_TLS },
    frontends: [],
    pemFiles: [],
    protosSelectedBy: undefined,
    proxyModes: new Map(),
    alpnPosition: undefined,
    acme: undefined,
    warnings: [],
    warnedOptions: new Set(),
  };
}

export function newFrontendDraft(position: SourcePosition): FrontendDraft {
  return {
    address: undefined,
    host: undefined,
    port: undefined,
    pemFiles: [],
    tls: {},
    protosSelectedBy: undefined,
    matchGlobalCerts: false,
    position,
  };
}

export function newPemDraft(position: SourcePosition): PemDraft {
  return {
    certPath: undefined,
    privateKeyPath: undefined,
    ocspResponsePath: undefined,
    clientVerify: undefined,
    clientVerifyCa: undefined,
    ocspVerifyStaple: undefined,
    position,
  };
}

export function formatPosition(position: SourcePosition): string {
  return `${position.file}:${position.line}:${position.column}`;
}
