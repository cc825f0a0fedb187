/**
 * Native TOML configuration (smol-toml) mapped onto the same entries as hitch.conf:
 * kebab-case option names, `[[frontend]]` / `[[pem-file]]` arrays of tables (and
 * `[[frontend.pem-file]]`), arrays for repeatable options and lists. Validation is the
 * shared option table's, so both formats accept and reject the same values.
 */
import { parse, TomlError } from 'smol-toml';
import { ConfigError, type SourcePosition } from './errors.js';
import type { Entry, ScalarItem } from './options/entry.js';
import { OPTIONS_BY_NAME } from './options/table.js';

type TomlTable = Record<string, unknown>;

function isTable(value: unknown): value is TomlTable {
  return (
    typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date)
  );
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function keyPattern(key: string): string {
  const quoted = escapeRegExp(key);
  return `(?:${quoted}|"${quoted}"|'${quoted}')`;
}

/**
 * Finds where keys and tables were written, by searching the text: smol-toml reports
 * positions only for syntax errors, and an approximate key position is enough for
 * "file:line:column" in semantic errors.
 */
class KeyLocator {
  constructor(
    private readonly text: string,
    private readonly file: string,
  ) {}

  position(offset: number): SourcePosition {
    const before = this.text.slice(0, offset);
    const line = before.split('\n').length;
    const column = offset - (before.lastIndexOf('\n') + 1) + 1;
    return { file: this.file, line, column };
  }

  /** Offset of the `index`-th `[[a.b]]` (or `[a.b]`) header after `from`, else of `key =`. */
  tableStart(path: readonly string[], index: number, from: number): number {
    const dotted = path.map(keyPattern).join('\\s*\\.\\s*');
    const header = new RegExp(`^[ \\t]*\\[\\[?[ \\t]*${dotted}[ \\t]*\\]\\]?`, 'gm');
    header.lastIndex = from;
    let seen = 0;
    for (let match = header.exec(this.text); match; match = header.exec(this.text)) {
      if (seen === index) return match.index + (match[0].length - match[0].trimStart().length);
      seen++;
    }
    const last = path[path.length - 1] ?? '';
    return this.keyOffset(last, from) ?? from;
  }

  keyOffset(key: string, from: number): number | undefined {
    const pattern = new RegExp(`(^|[{,\\s])${keyPattern(key)}[ \\t]*=`, 'gm');
    pattern.lastIndex = from;
    const match = pattern.exec(this.text);
    if (!match) return undefined;
    return match.index + (match[1] ?? '').length;
  }

  key(key: string, from: number): SourcePosition {
    return this.position(this.keyOffset(key, from) ?? from);
  }
}

function scalarItem(value: unknown, position: SourcePosition, key: string): ScalarItem {
  if (typeof value === 'string')
    return { text: value === '' ? undefined : value, quoted: true, position };
  if (typeof value === 'boolean') return { text: value ? 'on' : 'off', quoted: false, position };
  if (typeof value === 'number' || typeof value === 'bigint')
    return { text: String(value), quoted: false, position };
  throw new ConfigError(
    'UNHITCH_CONFIG_INVALID_VALUE',
    `'${key}' has an unsupported TOML value type`,
    position,
    'a string, number, boolean, array or table',
  );
}

function convertTable(
  table: TomlTable,
  path: readonly string[],
  start: number,
  locator: KeyLocator,
): Entry[] {
  const entries: Entry[] = [];
  for (const [key, value] of Object.entries(table)) {
    const position = locator.key(key, start);
    const childPath = [...path, key];
    if (isTable(value)) {
      const childStart = locator.tableStart(childPath, 0, start);
      entries.push({
        name: key,
        position: locator.position(childStart),
        value: {
          kind: 'block',
          entries: convertTable(value, childPath, childStart, locator),
          position: locator.position(childStart),
        },
      });
    } else if (Array.isArray(value) && value.length > 0 && value.every(isTable)) {
      value.forEach((element, index) => {
        const childStart = locator.tableStart(childPath, index, start);
        const where = locator.position(childStart);
        entries.push({
          name: key,
          position: where,
          value: {
            kind: 'block',
            entries: convertTable(element, childPath, childStart, locator),
            position: where,
          },
        });
      });
    } else if (Array.isArray(value)) {
      if (OPTIONS_BY_NAME.get(key)?.repeatable) {
        for (const element of value) {
          entries.push({
            name: key,
            position,
            value: { kind: 'scalar', items: [scalarItem(element, position, key)] },
          });
        }
      } else {
        entries.push({
          name: key,
          position,
          value: {
            kind: 'scalar',
            items: value.map((element) => scalarItem(element, position, key)),
          },
        });
      }
    } else {
      entries.push({
        name: key,
        position,
        value: { kind: 'scalar', items: [scalarItem(value, position, key)] },
      });
    }
  }
  return entries;
}

/** TOML text → entries; syntax errors carry smol-toml's line and column. */
export function tomlEntries(text: string, file: string): Entry[] {
  let document: TomlTable;
  try {
    document = parse(text) as TomlTable;
  } catch (err) {
    if (err instanceof TomlError) {
      const firstLine = (err.message.split('\n')[0] ?? err.message).replace(
        /^Invalid TOML document:\s*/,
        '',
      );
      throw new ConfigError('UNHITCH_CONFIG_SYNTAX', `invalid TOML: ${firstLine}`, {
        file,
        line: err.line,
        column: err.column,
      });
    }
    throw err;
  }
  return convertTable(document, [], 0, new KeyLocator(text, file));
}
