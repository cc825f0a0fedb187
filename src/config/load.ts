/**
 * Public configuration API: the command line (with Hitch's --config semantics), and the
 * two file formats. Hitch ≥ 1.5 applies every --config file FIRST, in order, and then the
 * other flags in command-line order (configuration.c, config_parse_cli: "apply its
 * options first in order to let them be overridden by the command line"), so a flag
 * overrides the file whether it comes before or after --config. PEM file arguments are
 * added last. Certificates, users and groups are NOT checked here.
 */
import { readFileSync } from 'node:fs';
import {
  COMMAND_LINE_SOURCE,
  type CommandLine,
  parseArgv,
  relabelCommandLineError,
} from './args.js';
import { ConfigError, type SourcePosition } from './errors.js';
import { hitchEntries, parseHitchText } from './hitch/parse.js';
import type { ProxyConfig } from './model.js';
import { applyEntries, finalizeDraft } from './options/apply.js';
import { type ConfigWarning, newDraft } from './options/draft.js';
import type { Entry } from './options/entry.js';
import { helpText } from './options/help.js';
import { tomlEntries } from './toml.js';

export type { ConfigWarning } from './options/draft.js';

interface ConfigAction<K extends 'run' | 'test'> {
  readonly kind: K;
  readonly config: ProxyConfig;
  readonly warnings: readonly ConfigWarning[];
  readonly configPath: string | undefined;
}

/** 'run' and 'test' are separate members so `Extract<CliAction, { kind: 'test' }>` works. */
export type CliAction =
  | ConfigAction<'run'>
  | ConfigAction<'test'>
  | { readonly kind: 'version'; readonly text: string }
  /** `--reload`: the running primary is found by its pidfile. */
  | { readonly kind: 'reload'; readonly pidfile: string }
  /** `status`: 0 for --help; 1 without any argument, as Hitch exits then. */
  | { readonly kind: 'help'; readonly text: string; readonly status: 0 | 1 };

const HITCH_COMPAT_VERSION = '1.7';

function packageVersion(): string {
  try {
    // dist/src/config/load.js → package.json at the repository root.
    const url = new URL('../../../package.json', import.meta.url);
    const parsed = JSON.parse(readFileSync(url, 'utf8')) as { version?: unknown };
    return typeof parsed.version === 'string' ? parsed.version : '0.0.0';
  } catch {
    return '0.0.0';
  }
}

export function versionText(): string {
  return `unhitch ${packageVersion()} (hitch-compatible ${HITCH_COMPAT_VERSION})`;
}

function isTomlPath(path: string): boolean {
  return path.toLowerCase().endsWith('.toml');
}

function readConfigFile(path: string, position: SourcePosition): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const reason =
      (err as NodeJS.ErrnoException).code ?? (err instanceof Error ? err.message : String(err));
    throw new ConfigError(
      'UNHITCH_CONFIG_FILE',
      `cannot read config file '${path}' (${reason})`,
      position,
    );
  }
}

/** Config file → entries, parser chosen by extension (`.toml` → TOML, else hitch.conf). */
export function configFileEntries(path: string, position: SourcePosition): Entry[] {
  const text = readConfigFile(path, position);
  return isTomlPath(path) ? tomlEntries(text, path) : hitchEntries(text, path);
}

/**
 * `--reload`'s pidfile from the --pidfile flag alone when given: a reload is asked for
 * because the file changed, and it may now be one the running unhitch will reject.
 * Undefined: it is in the --config file(s).
 */
function reloadPidfile(commandLine: CommandLine): string | undefined {
  const flag = commandLine.entries.findLast((entry) => entry.name === 'pidfile');
  const pidfile = flag?.value.kind === 'scalar' ? flag.value.items[0]?.text : undefined;
  if (pidfile === undefined && commandLine.configFiles.length === 0) missingPidfile();
  return pidfile;
}

function missingPidfile(): never {
  throw new ConfigError(
    'UNHITCH_CONFIG_MISSING',
    "--reload needs the running unhitch's pidfile (--pidfile=FILE, or pidfile in --config)",
  );
}

/** argv without the node/script prefix. Throws ConfigError. */
export function parseCommandLine(argv: readonly string[]): CliAction {
  // Hitch prints its usage when run without arguments.
  if (argv.length === 0) return { kind: 'help', text: helpText(), status: 1 };
  const commandLine = parseArgv(argv);
  if (commandLine.help) return { kind: 'help', text: helpText(), status: 0 };
  if (commandLine.version) return { kind: 'version', text: versionText() };
  if (commandLine.reload) {
    const pidfile = reloadPidfile(commandLine);
    if (pidfile !== undefined) return { kind: 'reload', pidfile };
  }
  const lastConfig = commandLine.configFiles[commandLine.configFiles.length - 1];
  const draft = newDraft(lastConfig?.path ?? COMMAND_LINE_SOURCE);
  let config: ProxyConfig;
  try {
    for (const file of commandLine.configFiles) {
      applyEntries(draft, configFileEntries(file.path, file.position));
    }
    applyEntries(draft, commandLine.entries);
    config = finalizeDraft(draft);
  } catch (err) {
    throw relabelCommandLineError(err, commandLine.labels);
  }
  const result = { config, warnings: draft.warnings, configPath: lastConfig?.path };
  if (commandLine.reload) return { kind: 'reload', pidfile: config.pidfile ?? missingPidfile() };
  return commandLine.test ? { kind: 'test', ...result } : { kind: 'run', ...result };
}

export function parseHitchConfigText(
  text: string,
  file: string,
): { config: ProxyConfig; warnings: ConfigWarning[] } {
  return parseHitchText(text, file);
}

export function parseTomlConfigText(
  text: string,
  file: string,
): { config: ProxyConfig; warnings: ConfigWarning[] } {
  const draft = newDraft(file);
  applyEntries(draft, tomlEntries(text, file));
  return { config: finalizeDraft(draft), warnings: draft.warnings };
}
