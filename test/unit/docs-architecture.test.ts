/**
 * docs/architecture.md's module layout is the contributors' map: every file and folder of
 * src/ and every folder of test/ has a row, and every path a row names exists. A module
 * added, moved or renamed without its row fails here (the table once still called
 * src/cli.ts the command after it moved to src/command.ts).
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'node:test';

const ROOT = resolve(import.meta.dirname, '../../..');

/** The paths named in the first column of the "Module layout" table, without a trailing slash. */
function layoutPaths(page: string): Set<string> {
  const section = /^## Module layout\n([\s\S]*?)(?=^## )/m.exec(page)?.[1] ?? '';
  const paths = new Set<string>();
  for (const line of section.split('\n')) {
    const firstCell = /^\|([^|]*)\|/.exec(line)?.[1] ?? '';
    for (const match of firstCell.matchAll(/`([^`]+)`/g))
      paths.add((match[1] ?? '').replace(/\/$/, ''));
  }
  return paths;
}

/** What the table must name: src/'s entries and test/'s folders, as they are on disk. */
function modules(): string[] {
  const src = readdirSync(join(ROOT, 'src')).map((name) => `src/${name}`);
  const test = readdirSync(join(ROOT, 'test'), { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => `test/${entry.name}`);
  return [...src, ...test].sort();
}

test('docs/architecture.md has a module layout row for every entry of src/ and folder of test/, and names no path that is gone', () => {
  const named = layoutPaths(readFileSync(join(ROOT, 'docs', 'architecture.md'), 'utf8'));
  assert.ok(named.size > 0, 'architecture.md has no "## Module layout" table');
  assert.deepEqual(
    modules().filter((path) => !named.has(path)),
    [],
    'without a row in architecture.md',
  );
  assert.deepEqual(
    [...named].filter((path) => !existsSync(join(ROOT, path))),
    [],
    'named in architecture.md, not in the tree',
  );
});

test('the layout check reads the first column of the Module layout table only', () => {
  const page = [
    '## Module layout',
    '',
    '| Directory | What |',
    '|---|---|',
    '| `src/a.ts`, `src/b/` | the `src/c.ts` in this cell is not a row |',
    '',
    '## Next',
    '| `src/d.ts` | another table |',
  ].join('\n');
  assert.deepEqual([...layoutPaths(page)], ['src/a.ts', 'src/b']);
});
