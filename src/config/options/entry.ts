/**
 * One option assignment, whatever it was written in: hitch.conf's grammar, TOML and the
 * command line all produce these, so the option table validates every source once.
 */
import type { SourcePosition } from '../errors.js';

export interface ScalarItem {
  /** undefined = Hitch's `""` (unset). */
  readonly text: string | undefined;
  readonly quoted: boolean;
  readonly position: SourcePosition;
}

export interface ScalarValue {
  readonly kind: 'scalar';
  readonly items: readonly ScalarItem[];
}

export interface BlockValue {
  readonly kind: 'block';
  readonly entries: readonly Entry[];
  readonly position: SourcePosition;
}

export interface Entry {
  readonly name: string;
  /** Position of the option name. */
  readonly position: SourcePosition;
  readonly value: ScalarValue | BlockValue;
}
