/**
 * Hitch's command line via node:util parseArgs. Flags come from the option table
 * (Hitch's own flags plus `--name=value` for every other top-level option); positional
 * arguments are PEM files. Nothing is applied here: load.ts decides the order.
 */
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { ConfigError, type SourcePosition } from './errors.js';
import type { Entry } from './options/entry.js';
import { OPTIONS, type OptionSpec } from './options/table.js';

export const COMMAND_LINE_SOURCE = '<command line>';

export interface ConfigFileArgument {
  readonly path: string;
  readonly position: SourcePosition;
}

export interface CommandLine {
  /** Every --config, in order. */
  readonly configFiles: readonly ConfigFileArgument[];
  /** Option flags in command-line order, then positional PEM files as pem-file entries. */
  readonly entries: readonly Entry[];
  readonly test: boolean;
  /** `--reload`: signal the running unhitch (its --pidfile) and wait for the verdict. */
  readonly reload: boolean;
  readonly version: boolean;
  readonly help: boolean;
  /** argv text per entry column (argv index + 1), e.g. "-n 0", for error messages. */
  readonly labels: ReadonlyMap<number, string>;
}

type ParseOptions = NonNullable<ParseArgsConfig['options']>;

const FLAG_SPECS: ReadonlyMap<string, OptionSpec> = new Map(
  OPTIONS.flatMap((spec) => (spec.cli ? [[spec.cli.long, spec] as const] : [])),
);

function parseArgsOptions(): ParseOptions {
  const options: ParseOptions = {
    config: { type: 'string', multiple: true },
    test: { type: 'boolean', short: 't' },
    reload: { type: 'boolean' },
    version: { type: 'boolean', short: 'V' },
    help: { type: 'boolean', short: 'h' },
  };
  for (const [long, spec] of FLAG_SPECS) {
    const cli = spec.cli;
    if (!cli) continue;
    options[long] = {
      type: cli.takesValue ? 'string' : 'boolean',
      multiple: true,
      ...(cli.short ? { short: cli.short } : {}),
    };
  }
  return options;
}

function position(argvIndex: number): SourcePosition {
  return { file: COMMAND_LINE_SOURCE, line: 1, column: argvIndex + 1 };
}

/** Node's parseArgs errors → ConfigError naming the offending flag. */
function translateParseError(err: unknown): never {
  const code = (err as { code?: unknown }).code;
  const message = err instanceof Error ? err.message : String(err);
  const flag = /'([^']+)'/.exec(message)?.[1] ?? message;
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    throw new ConfigError(
      'UNHITCH_CONFIG_UNKNOWN_OPTION',
      `unknown option '${flag}'`,
      undefined,
      'a flag listed by --help',
    );
  }
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    throw new ConfigError('UNHITCH_CONFIG_INVALID_VALUE', message.split('\n')[0] ?? message);
  }
  throw err;
}

/**
 * Hitch ≥ 1.7 takes `--switch=on` and `--switch=off` for its boolean switches; parseArgs
 * does not let a boolean carry a value, so those become the bare switch here and the
 * value is remembered by argv index. Any other value is Hitch's error.
 */
function splitSwitchValues(argv: readonly string[]): {
  args: string[];
  switchValues: Map<number, string>;
} {
  const switchValues = new Map<number, string>();
  const args = argv.map((arg, index) => {
    const match = /^--([^=]+)=(.*)$/s.exec(arg);
    const spec = match ? FLAG_SPECS.get(match[1] ?? '') : undefined;
    if (!match || spec?.cli === undefined || spec.cli.takesValue) return arg;
    const value = match[2] ?? '';
    if (value !== 'on' && value !== 'off') {
      throw new ConfigError(
        'UNHITCH_CONFIG_INVALID_VALUE',
        `invalid argument '${value}' for option '--${match[1]}'`,
        undefined,
        "one of 'on' or 'off'",
      );
    }
    switchValues.set(index, value);
    return `--${match[1]}`;
  });
  return { args, switchValues };
}

export function parseArgv(argv: readonly string[]): CommandLine {
  let tokens: NonNullable<ReturnType<typeof parseArgs>['tokens']>;
  const { args, switchValues } = splitSwitchValues(argv);
  try {
    tokens =
      parseArgs({
        args,
        options: parseArgsOptions(),
        strict: true,
        allowPositionals: true,
        tokens: true,
      }).tokens ?? [];
  } catch (err) {
    translateParseError(err);
  }
  const configFiles: ConfigFileArgument[] = [];
  const entries: Entry[] = [];
  const pemEntries: Entry[] = [];
  /** --acme-* flags, applied as one acme block after the other flags. */
  const acmeEntries: Entry[] = [];
  const labels = new Map<number, string>();
  let test = false;
  let reload = false;
  let version = false;
  let help = false;
  for (const token of tokens) {
    if (token.kind === 'positional') {
      const where = position(token.index);
      labels.set(where.column, token.value);
      pemEntries.push({
        name: 'pem-file',
        position: where,
        value: { kind: 'scalar', items: [{ text: token.value, quoted: true, position: where }] },
      });
      continue;
    }
    if (token.kind !== 'option') continue;
    const where = position(token.index);
    switch (token.name) {
      case 'config':
        labels.set(where.column, `${token.rawName} ${token.value ?? ''}`);
        configFiles.push({ path: token.value ?? '', position: where });
        continue;
      case 'test':
        test = true;
        continue;
      case 'reload':
        reload = true;
        continue;
      case 'version':
        version = true;
        continue;
      case 'help':
        help = true;
        continue;
    }
    const spec = FLAG_SPECS.get(token.name);
    if (!spec)
      throw new ConfigError(
        'UNHITCH_CONFIG_UNKNOWN_OPTION',
        `unknown option '${token.rawName}'`,
        where,
      );
    const text = token.value ?? switchValues.get(token.index) ?? 'on';
    labels.set(
      where.column,
      token.value === undefined
        ? (argv[token.index] ?? token.rawName)
        : `${token.rawName} ${token.value}`,
    );
    (spec.scopes.includes('acme') ? acmeEntries : entries).push({
      name: spec.name,
      position: where,
      value: {
        kind: 'scalar',
        items: [{ text: text === '' ? undefined : text, quoted: true, position: where }],
      },
    });
  }
  const first = acmeEntries[0];
  if (first !== undefined) {
    entries.push({
      name: 'acme',
      position: first.position,
      value: { kind: 'block', entries: acmeEntries, position: first.position },
    });
  }
  return {
    configFiles,
    entries: [...entries, ...pemEntries],
    test,
    reload,
    version,
    help,
    labels,
  };
}

/**
 * Positions on the command line are argv indexes, which mean little to a reader: say
 * which argument it was instead ("-n 0: 0 is out of range").
 */
export function relabelCommandLineError(
  err: unknown,
  labels: ReadonlyMap<number, string>,
): unknown {
  if (!(err instanceof ConfigError) || err.position?.file !== COMMAND_LINE_SOURCE) return err;
  const label = labels.get(err.position.column);
  if (label === undefined) return err;
  const where = `${err.position.file}:${err.position.line}:${err.position.column}: `;
  const wanted = err.expected ? ` (expected ${err.expected})` : '';
  const bare = err.message.slice(where.length, err.message.length - wanted.length);
  const relabelled = new ConfigError(
    err.code,
    `argument '${label}': ${bare}`,
    undefined,
    err.expected,
  );
  return relabelled;
}
