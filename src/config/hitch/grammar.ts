/**
 * hitch.conf grammar: tokens → assignments. Every front end (hitch.conf, TOML, the
 * command line) produces these same `Entry` lists (config/options/entry.ts), so the
 * option table validates them once.
 *
 *   file   := entry*
 *   entry  := WORD '=' value
 *   value  := '{' entry* '}' | scalar+      (more than one scalar only for lists like tls-protos)
 *
 * A scalar list stays on one line and stops before a word followed by '=' (the next
 * option's name).
 */
import { ConfigError, type SourcePosition } from '../errors.js';
import type { BlockValue, Entry, ScalarItem, ScalarValue } from '../options/entry.js';
import type { Token } from './lexer.js';

export function parseEntries(tokens: readonly Token[], file: string): Entry[] {
  const parser = new Parser(tokens, file);
  const entries = parser.entries(undefined);
  return entries;
}

function describe(token: Token): string {
  switch (token.kind) {
    case 'eof':
      return 'end of file';
    case 'string':
      return token.text === undefined ? '""' : `"${token.text}"`;
    case 'word':
      return `'${token.text ?? ''}'`;
    default:
      return `'${token.kind}'`;
  }
}

class Parser {
  private index = 0;

  constructor(
    private readonly tokens: readonly Token[],
    private readonly file: string,
  ) {}

  private peek(offset = 0): Token {
    const token = this.tokens[Math.min(this.index + offset, this.tokens.length - 1)];
    if (!token) throw new Error('token stream without eof');
    return token;
  }

  private next(): Token {
    const token = this.peek();
    if (token.kind !== 'eof') this.index++;
    return token;
  }

  private position(token: Token): SourcePosition {
    return { file: this.file, line: token.line, column: token.column };
  }

  private fail(token: Token, expected: string): never {
    throw new ConfigError(
      'UNHITCH_CONFIG_SYNTAX',
      `unexpected ${describe(token)}`,
      this.position(token),
      expected,
    );
  }

  /** Entries up to eof (top level) or the `}` closing the block opened at `opener`. */
  entries(opener: Token | undefined): Entry[] {
    const entries: Entry[] = [];
    for (;;) {
      const token = this.peek();
      if (token.kind === 'eof') {
        if (opener)
          this.fail(token, `'}' to close the block opened at ${opener.line}:${opener.column}`);
        return entries;
      }
      if (token.kind === '}') {
        if (!opener) this.fail(token, 'an option name');
        this.next();
        return entries;
      }
      entries.push(this.entry());
    }
  }

  private entry(): Entry {
    const nameToken = this.next();
    if (nameToken.kind !== 'word' || nameToken.text === undefined)
      this.fail(nameToken, 'an option name');
    const equals = this.next();
    if (equals.kind !== '=') this.fail(equals, `'=' after '${nameToken.text}'`);
    return {
      name: nameToken.text,
      position: this.position(nameToken),
      value: this.value(nameToken.text),
    };
  }

  private value(name: string): ScalarValue | BlockValue {
    const first = this.next();
    if (first.kind === '{') {
      return { kind: 'block', entries: this.entries(first), position: this.position(first) };
    }
    if (first.kind !== 'word' && first.kind !== 'string') this.fail(first, `a value for '${name}'`);
    const items: ScalarItem[] = [this.item(first)];
    for (;;) {
      const candidate = this.peek();
      const isScalar = candidate.kind === 'word' || candidate.kind === 'string';
      const previous = items[items.length - 1];
      // A list (tls-protos) stays on one line; a word on the next line starts the next
      // option, so `workers 4` is reported as a missing '=' rather than a stray value.
      const sameLine = previous !== undefined && candidate.line === previous.position.line;
      if (!isScalar || !sameLine || this.peek(1).kind === '=') break;
      items.push(this.item(this.next()));
    }
    return { kind: 'scalar', items };
  }

  private item(token: Token): ScalarItem {
    return { text: token.text, quoted: token.kind === 'string', position: this.position(token) };
  }
}
