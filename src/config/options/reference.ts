/**
 * Everything a reader is told about one option, gathered from the option table and the
 * maps beside it (defaults, reload, Hitch differences): the one source of `--help`,
 * docs/configuration.md and the man pages unhitch(8) and unhitch.conf(5).
 */
import { optionDefault } from './defaults.js';
import { hitchDifference } from './hitch-differences.js';
import { PROVENANCE, SCOPE_PROVENANCE, VALUE_PROVENANCE } from './provenance.js';
import { type ReloadEffect, reloadEffect } from './reload.js';
import { OPTIONS, type OptionScope, type OptionSpec } from './table.js';

/** How a value is shown after a flag (`--backend=[HOST]:PORT|SOCKET`). */
const METAVAR: Partial<Record<OptionSpec['valueType'], string>> = {
  frontend: '[HOST]:PORT[+CERT]',
  backend: '[HOST]:PORT|SOCKET',
  address: 'HOST:PORT',
  bool: 'on|off',
  uint: 'N',
  seconds: 'SECONDS',
  path: 'PATH',
  string: 'TEXT',
  'tls-protos': '"PROTO ..."',
  'log-level': '0|1|2|NAME',
  'alpn-protos': 'LIST',
  'address-list': 'LIST',
  url: 'URL',
  'dns-name': 'NAME',
  'acme-challenge': 'tls-alpn-01|http-01',
  'client-verify': 'none|optional|required',
  'log-format': 'auto|json|pretty',
};

/** The block an option is written in, for the scopes it may not appear at the top level. */
const BLOCK_OF: Record<Exclude<OptionScope, 'global'>, { hitch: string; toml: string }> = {
  frontend: { hitch: 'frontend = { … }', toml: '[[frontend]]' },
  'pem-file': { hitch: 'pem-file = { … }', toml: '[[pem-file]]' },
  acme: { hitch: 'acme = { … }', toml: '[acme]' },
};

export interface OptionReference {
  readonly spec: OptionSpec;
  /** `hitch.conf` assignment with the table's sample value. */
  readonly hitchExample: string;
  /** The same assignment in TOML. */
  readonly tomlExample: string;
  /** Where the option may stand: "top level", "frontend = { … }", … */
  readonly where: readonly string[];
  /** `-c, --ciphers=TEXT`, or undefined when there is no flag. */
  readonly flag: string | undefined;
  readonly defaultText: string;
  readonly reload: ReloadEffect;
  /** "Hitch 1.7", "Hitch 1.8" or "unhitch only" (provenance.ts). */
  readonly origin: string;
  /** Values and places of a Hitch option that came with a later release. */
  readonly later: readonly string[];
  /** How it differs from Hitch's, when it does. */
  readonly difference: string | undefined;
  /** The table's one sentence, with why node cannot carry it out when it cannot. */
  readonly meaning: string;
}

export function flagLabel(spec: OptionSpec): string | undefined {
  const cli = spec.cli;
  if (!cli) return undefined;
  const value = cli.takesValue ? `=${METAVAR[spec.valueType] ?? spec.valueType.toUpperCase()}` : '';
  return `${cli.short ? `-${cli.short}, ` : ''}--${cli.long}${value}`;
}

/** A hitch.conf sample as TOML: booleans and bare lists become TOML values. */
export function tomlValue(spec: OptionSpec): string {
  const sample = spec.sample;
  if (spec.valueType === 'bool') return sample === 'on' ? 'true' : 'false';
  if (sample.startsWith('"') || sample.startsWith('{')) return sample;
  if (/^[0-9]+$/.test(sample)) return sample;
  const words = sample.split(/\s+/);
  return words.length > 1
    ? `[${words.map((word) => JSON.stringify(word)).join(', ')}]`
    : JSON.stringify(sample);
}

function whereLabels(spec: OptionSpec): string[] {
  return spec.scopes.map((scope) => (scope === 'global' ? 'top level' : BLOCK_OF[scope].hitch));
}

function examples(spec: OptionSpec): { hitch: string; toml: string } {
  const hitch = `${spec.name} = ${spec.sample}`;
  const toml = `${spec.name} = ${tomlValue(spec)}`;
  const first = spec.scopes[0];
  if (first === undefined || first === 'global') return { hitch, toml };
  const block = BLOCK_OF[first];
  return {
    hitch: `${block.hitch.replace('…', hitch)}`,
    toml: `${block.toml} ${toml}`,
  };
}

function meaningOf(spec: OptionSpec): string {
  const summary = `${spec.summary.slice(0, 1).toUpperCase()}${spec.summary.slice(1)}`;
  if (spec.implemented) return summary;
  return spec.notCarriedOutBecause === undefined
    ? `${summary} (accepted, not carried out)`
    : `${summary} (accepted, not carried out: ${spec.notCarriedOutBecause})`;
}

export function optionReference(spec: OptionSpec): OptionReference {
  const reload = reloadEffect(spec.name);
  const defaultText = optionDefault(spec.name);
  if (reload === undefined || defaultText === undefined)
    throw new Error(
      `option '${spec.name}' lacks an entry in ${reload === undefined ? 'reload.ts' : 'defaults.ts'}`,
    );
  const { hitch, toml } = examples(spec);
  return {
    spec,
    hitchExample: hitch,
    tomlExample: toml,
    where: whereLabels(spec),
    flag: flagLabel(spec),
    defaultText,
    reload,
    origin: originOf(spec.name),
    later: [
      ...VALUE_PROVENANCE.filter((entry) => entry.option === spec.name).map(
        (entry) => `${spec.name} = ${entry.value} since Hitch ${entry.since}`,
      ),
      ...SCOPE_PROVENANCE.filter((entry) => entry.option === spec.name).map(
        (entry) => `in a ${entry.scope} block since Hitch ${entry.since}`,
      ),
    ],
    difference: hitchDifference(spec.name),
    meaning: meaningOf(spec),
  };
}

function originOf(name: string): string {
  const version = Object.hasOwn(PROVENANCE, name) ? PROVENANCE[name] : undefined;
  if (version === undefined) throw new Error(`option '${name}' lacks an entry in provenance.ts`);
  return version === 'unhitch' ? 'unhitch only' : `Hitch ${version}`;
}

/** Every option, in the table's order. */
export function optionReferences(): OptionReference[] {
  return OPTIONS.map(optionReference);
}

/** "applies", "applies (note)", "does not apply: …", as the reference prints it. */
export function reloadText(effect: ReloadEffect): string {
  const verdict = {
    yes: 'applies',
    no: 'needs a restart',
    partly: 'applies in part',
    'not carried out': 'nothing to apply (not carried out)',
  }[effect.applies];
  return effect.note === undefined ? verdict : `${verdict}: ${effect.note}`;
}

/** The Hitch column: where the option comes from and how it differs. */
export function hitchText(reference: OptionReference): string {
  if (reference.origin === 'unhitch only') return 'unhitch only';
  const later = reference.later.length > 0 ? ` (${reference.later.join('; ')})` : '';
  return reference.difference === undefined
    ? `${reference.origin}${later}, same behaviour`
    : `${reference.origin}${later}; unhitch differs: ${reference.difference}`;
}
