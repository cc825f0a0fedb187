/**
 * hitch.conf lexer (Hitch 1.7/1.8 cfg_lex.l): `#` comments to end of line, whitespace
 * and newlines insignificant, stray `,` and `;` ignored, double-quoted strings WITHOUT
 * escapes (`""` = unset), bare words, `=`, `{`, `}`. Positions are 1-based.
 */
import { ConfigError } from '../errors.js';

export type TokenKind = 'word' | 'string' | '=' | '{' | '}' | 'eof';

export interface Token {
  readonly kind: TokenKind;
  /** Word or string contents; undefined for `""` (Hitch's "unset") and punctuation. */
  readonly text: string | undefined;
  readonly line: number;
  readonly column: number;
}

/** Hitch's bare words are [a-zA-Z0-9-]+; `.` is added so TLSv1.2 and 0.5 lex as one word. */
const WORD_CHAR = /[A-Za-z0-9._-]/;
const IGNORED_CHARS = new Set([' ', '\t', '\r', '\n', ',', ';', '\uFEFF']);
const PUNCTUATION = new Set(['=', '{', '}']);

export function tokenize(text: string, file: string): Token[] {
  const tokens: Token[] = [];
  let line = 1;
  let column = 1;
  let i = 0;
  const advance = (count: number): void => {
    for (let k = 0; k < count; k++) {
      if (text[i] === '\n') {
        line++;
        column = 1;
      } else {
        column++;
      }
      i++;
    }
  };
  while (i < text.length) {
    const ch = text[i] as string;
    if (IGNORED_CHARS.has(ch)) {
      advance(1);
    } else if (ch === '#') {
      while (i < text.length && text[i] !== '\n') advance(1);
    } else if (PUNCTUATION.has(ch)) {
      tokens.push({ kind: ch as TokenKind, text: undefined, line, column });
      advance(1);
    } else if (ch === '"') {
      tokens.push(readString(text, i, line, column, file));
      const end = text.indexOf('"', i + 1);
      advance(end - i + 1);
    } else if (WORD_CHAR.test(ch)) {
      let end = i;
      while (end < text.length && WORD_CHAR.test(text[end] as string)) end++;
      tokens.push({ kind: 'word', text: text.slice(i, end), line, column });
      advance(end - i);
    } else {
      throw new ConfigError(
        'UNHITCH_CONFIG_SYNTAX',
        `unexpected character ${JSON.stringify(ch)}`,
        { file, line, column },
        'an option name, "=", "{", "}", a quoted string or a bare word',
      );
    }
  }
  tokens.push({ kind: 'eof', text: undefined, line, column });
  return tokens;
}

/** A string may not span lines: an unclosed quote is reported where it opened. */
function readString(
  text: string,
  start: number,
  line: number,
  column: number,
  file: string,
): Token {
  const end = text.indexOf('"', start + 1);
  const newline = text.indexOf('\n', start + 1);
  if (end < 0 || (newline >= 0 && newline < end)) {
    throw new ConfigError(
      'UNHITCH_CONFIG_SYNTAX',
      'unterminated string',
      { file, line, column },
      "a closing '\"' on the same line",
    );
  }
  const contents = text.slice(start + 1, end);
  return { kind: 'string', text: contents === '' ? undefined : contents, line, column };
}
