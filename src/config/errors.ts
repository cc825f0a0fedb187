/**
 * Configuration errors. Every one carries a stable `code` (src/errors.ts) and, when it
 * comes from a file, the 1-based line and column so the message reads
 * `file:line:column: …`.
 */
import { UnhitchError } from '../errors.js';

export type ConfigErrorCode =
  | 'UNHITCH_CONFIG_SYNTAX'
  | 'UNHITCH_CONFIG_UNKNOWN_OPTION'
  | 'UNHITCH_CONFIG_INVALID_VALUE'
  | 'UNHITCH_CONFIG_MISSING'
  | 'UNHITCH_CONFIG_FILE'
  | 'UNHITCH_CONFIG_CONFLICT';

export interface SourcePosition {
  readonly file: string;
  readonly line: number;
  readonly column: number;
}

export class ConfigError extends UnhitchError<ConfigErrorCode> {
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
    super(code, `${where}${message}${wanted}`);
    this.name = 'ConfigError';
    this.position = position;
    this.expected = expected;
  }
}
