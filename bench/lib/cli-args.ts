/** `--name=value` / `--flag` parsing shared by the bench scripts. */

export type Flags = ReadonlyMap<string, string>;

export function parseFlags(argv: readonly string[], known: readonly string[]): Map<string, string> {
  const flags = new Map<string, string>();
  for (const arg of argv) {
    const match = /^--([a-z0-9-]+)(?:=(.*))?$/s.exec(arg);
    if (!match?.[1] || !known.includes(match[1])) {
      throw Object.assign(new Error(`unknown argument ${arg}; known: --${known.join(', --')}`), {
        code: 'BENCH_BAD_ARGUMENT',
      });
    }
    flags.set(match[1], match[2] ?? 'true');
  }
  return flags;
}

export function numberFlag(flags: Flags, name: string, fallback: number): number {
  const text = flags.get(name);
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isFinite(value)) {
    throw Object.assign(new Error(`--${name} needs a number, got ${text}`), {
      code: 'BENCH_BAD_ARGUMENT',
    });
  }
  return value;
}

/** A number flag that must be above zero (counts, durations). */
export function positiveFlag(flags: Flags, name: string, fallback: number): number {
  const value = numberFlag(flags, name, fallback);
  if (!(value > 0)) {
    throw Object.assign(new Error(`--${name} must be a positive number`), {
      code: 'BENCH_BAD_ARGUMENT',
    });
  }
  return value;
}

export function listFlag(flags: Flags, name: string, fallback: readonly string[]): string[] {
  const text = flags.get(name);
  return text === undefined
    ? [...fallback]
    : text
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
}

/** The command line as typed, for RESULTS.md. */
export function commandLine(): string {
  const script = process.argv[1]?.replace(/^.*\/dist\//, 'dist/') ?? '';
  return ['node', script, ...process.argv.slice(2)].join(' ');
}
