/**
 * Configuration errors. Every one carries a stable `code` and, when it comes from a
 * file, the 1-based line and column so the message reads `file:line:column: …`.
 */

export type ConfigErrorCode =
  | 'UNHITCH_CONFIG_SYNTAX' // lexer/grammar: unexpected character or token
  | 'UNHITCH_CONFIG_UNKNOWN_OPTION' // an option name neither Hitch nor unhitch knows
  | 'UNHITCH_CONFIG_INVALID_VALUE' // right option, wrong value
  | 'UNHITCH_CONFIG_MISSING' // a required value is absent (e.g. no certificate)
  | 'UNHITCH_CONFIG_FILE' // cannot read the config file or a file it names
  | 'UNHITCH_CONFIG_CONFLICT'; // options that cannot be combined

export interface SourcePosition {
  readonly file: string;
  readonly line: number;
  readonly column: number;
}

export class ConfigError extends Error {
  readonly code: ConfigErrorCode;
  readonly position: SourcePosition | undefined;
  /** What the parser expected at this point, e.g. `"=" after option name`. */
  readonly expected: string | undefined;

  constructor(
    code: ConfigErrorCode,
    message: string,
    position?: SourcePosition,
    expected?: string,
  ) {
    const where = position ? `${position.file}:${position.line}:${position.column}: ` : '';
    const wanted = expected ? ` (expected ${expected})` : '';
    super(`${where}${message}${wanted}`);
    this.name = 'ConfigError';
    this.code = code;
    this.position = position;
    this.expected = expected;
  }
}
