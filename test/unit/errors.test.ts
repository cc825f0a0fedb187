/**
 * The code registry is the only source of UNHITCH_* codes: every code written anywhere
 * in src/ is registered, every registered code is used, and docs/errors.md's table is the one
 * generated from the registry.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { ERRORS_PATH, withCodesTable } from '../../docs/generate/codes-table.js';
import { ConfigError } from '../../src/config/errors.js';
import {
  CODES,
  exitStatusFor,
  isUnhitchCode,
  UNHITCH_ENVIRONMENT_VARIABLES,
  UnhitchError,
} from '../../src/errors.js';

const SRC = resolve(import.meta.dirname, '../../../src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** Every `UNHITCH_…` word in src/ outside the registry, with where it is. */
function codesInSource(): Map<string, string> {
  const found = new Map<string, string>();
  for (const file of sourceFiles(SRC)) {
    if (file === join(SRC, 'errors.ts')) continue;
    const text = readFileSync(file, 'utf8');
    for (const match of text.matchAll(/\bUNHITCH_[A-Z0-9_]+\b/g)) {
      const line = text.slice(0, match.index).split('\n').length;
      found.set(match[0], `${file.slice(SRC.length + 1)}:${line}`);
    }
  }
  return found;
}

test('every UNHITCH_* word in src/ is a registered code or a known environment variable', () => {
  const environment = new Set<string>(UNHITCH_ENVIRONMENT_VARIABLES);
  const unregistered = [...codesInSource()]
    .filter(([word]) => !isUnhitchCode(word) && !environment.has(word))
    .map(([word, where]) => `${word} (${where})`);
  assert.deepEqual(unregistered, [], 'add these to CODES in src/errors.ts');
});

test('every registered code is used somewhere in src/', () => {
  const used = codesInSource();
  const unused = Object.keys(CODES).filter((code) => !used.has(code));
  assert.deepEqual(unused, [], 'registered but never made or logged');
});

test('docs/errors.md holds the table generated from the registry (npm run docs:codes)', () => {
  const page = readFileSync(ERRORS_PATH, 'utf8');
  assert.equal(page, withCodesTable(page), 'run `npm run docs:codes`');
  for (const code of Object.keys(CODES)) assert.ok(page.includes(`| \`${code}\` |`), code);
});

test('exit status comes from the registry; error classes carry registered codes', () => {
  const config = new ConfigError('UNHITCH_CONFIG_SYNTAX', 'bad', {
    file: 'x.conf',
    line: 2,
    column: 3,
  });
  assert.ok(config instanceof UnhitchError);
  assert.equal(config.message, 'x.conf:2:3: bad');
  assert.equal(exitStatusFor(config), CODES.UNHITCH_CONFIG_SYNTAX.exitStatus);
  assert.equal(exitStatusFor(new UnhitchError('UNHITCH_WORKERS_FAILED', 'x')), 1);
  // Not ours (a node error, a thrown string): still a failure, Hitch's status 1.
  assert.equal(exitStatusFor(Object.assign(new Error('x'), { code: 'EACCES' })), 1);
  assert.equal(exitStatusFor('boom'), 1);
  for (const [code, spec] of Object.entries(CODES)) {
    assert.ok(spec.meaning.length > 10, `${code} needs a meaning`);
    assert.ok(spec.exitStatus === null || spec.exitStatus > 0, `${code}: exit status`);
  }
});
