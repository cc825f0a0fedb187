/**
 * The reference is generated from the option table (docs/generate/reference.ts) and the
 * docs may only name options that exist: a stale generated file, an option without an
 * entry in a map beside the table, or a doc naming `--no-such-flag` or `no-such-key =`
 * fails here.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { referenceFiles } from '../../docs/generate/reference.js';
import { hitchEntries } from '../../src/config/hitch/parse.js';
import { OPTION_DEFAULTS } from '../../src/config/options/defaults.js';
import type { Entry } from '../../src/config/options/entry.js';
import { COMMAND_FLAGS, helpText } from '../../src/config/options/help.js';
import { HITCH_DIFFERENCES } from '../../src/config/options/hitch-differences.js';
import { optionReferences } from '../../src/config/options/reference.js';
import { RELOAD_EFFECTS } from '../../src/config/options/reload.js';
import { OPTIONS } from '../../src/config/options/table.js';
import { tomlEntries } from '../../src/config/toml.js';

const ROOT = resolve(import.meta.dirname, '../../..');
const NAMES = new Set(OPTIONS.map((spec) => spec.name));

test('docs/configuration.md and the man pages are what `npm run docs:reference` writes', () => {
  for (const { path, text } of referenceFiles()) {
    assert.equal(readFileSync(path, 'utf8'), text, `${path} is stale: run npm run docs:reference`);
  }
});

test('every option has a default and a SIGHUP entry, and the maps name no other option', () => {
  for (const [map, keys] of [
    ['defaults.ts', Object.keys(OPTION_DEFAULTS)],
    ['reload.ts', Object.keys(RELOAD_EFFECTS)],
    ['hitch-differences.ts', Object.keys(HITCH_DIFFERENCES)],
  ] as const) {
    for (const key of keys) assert.ok(NAMES.has(key), `${map} names '${key}', not an option`);
  }
  for (const name of NAMES) {
    assert.ok(Object.hasOwn(OPTION_DEFAULTS, name), `defaults.ts lacks '${name}'`);
    assert.ok(Object.hasOwn(RELOAD_EFFECTS, name), `reload.ts lacks '${name}'`);
  }
});

test('every option has its entry in configuration.md and unhitch.conf(5); every flag is in --help and unhitch(8)', () => {
  const [configuration, man8, man5] = referenceFiles().map((file) => file.text);
  const help = helpText();
  for (const reference of optionReferences()) {
    const { name } = reference.spec;
    assert.match(configuration ?? '', new RegExp(`^### ${name}$`, 'm'), name);
    assert.ok(man5?.includes(`${name.replaceAll('-', '\\-')} = `), `unhitch.conf.5: ${name}`);
    if (reference.flag === undefined) continue;
    assert.ok(help.includes(reference.flag), `--help: ${reference.flag}`);
    // \\: marks where roff may break a long word.
    assert.ok(
      man8?.replaceAll('\\:', '').includes(reference.flag.replaceAll('-', '\\-')),
      `unhitch.8: ${reference.flag}`,
    );
  }
});

test("no option's meaning repeats its default: --help and the reference print the default beside it", () => {
  const repeating = OPTIONS.filter((spec) => /\(default\b|, default\)/.test(spec.summary)).map(
    (spec) => `${spec.name}: ${spec.summary}`,
  );
  assert.deepEqual(repeating, []);
  // "(0 = OS default)" says what a value means, not what the default is.
  assert.ok(!/\(default/.test(helpText().replace(/\(default: [^)]*\)/g, '')), helpText());
});

test('every entry says in words what a SIGHUP does with the option', () => {
  const [configuration, , man5] = referenceFiles().map((file) => file.text);
  const verdict =
    /^(applies|needs a restart|applies in part|nothing to apply \(not carried out\))(:|\.|$)/;
  const said = (text: string | undefined, prefix: RegExp): string[] =>
    [...(text ?? '').matchAll(prefix)].map((match) => match[1] ?? '');
  const entries = said(configuration, /^- SIGHUP: (.*)$/gm);
  assert.equal(entries.length, OPTIONS.length);
  assert.deepEqual(
    [...entries, ...said(man5, /^SIGHUP: (.*?)\. Hitch:/gm)].filter((text) => !verdict.test(text)),
    [],
  );
});

/** Names and values only: the hitch.conf and TOML forms of one example must agree. */
function shape(entries: readonly Entry[]): unknown {
  return entries.map((entry) =>
    entry.value.kind === 'block'
      ? { name: entry.name, block: shape(entry.value.entries) }
      : { name: entry.name, items: entry.value.items.map((item) => item.text) },
  );
}

test("each option's hitch.conf and TOML examples parse to the same assignment", () => {
  for (const reference of optionReferences()) {
    // "[[frontend]] host = …" is one line in the reference, a table header and a key in TOML.
    const toml = reference.tomlExample.replace(/^(\[\[?[a-z-]+\]\]?) /, '$1\n');
    assert.deepEqual(
      shape(tomlEntries(toml, 'example.toml')),
      shape(hitchEntries(reference.hitchExample, 'example.conf')),
      reference.spec.name,
    );
  }
});

// --- Docs name only options that exist ----------------------------------------------------

/** Flags of the command itself (--config, --test, --reload …), from --help's own list. */
const COMMAND_FLAG_NAMES = COMMAND_FLAGS.flatMap(({ label }) =>
  [...label.matchAll(/--?[a-zA-Z][\w-]*/g)].map((match) => match[0]),
);
/**
 * Other programs' flags the docs name in inline code, each with its program. A doc naming a
 * new one adds it here, so a misspelt unhitch flag cannot hide among them.
 */
const FOREIGN_FLAGS = new Set([
  // node (worker heap sizing, see operations.md)
  '--max-semi-space-size',
  '--min-semi-space-size',
  '--semi-space-growth-factor',
  '--scavenger-max-new-space-capacity-mb',
  '--max-heap-size',
  // testssl.sh
  '--add-ca',
]);

function knownFlags(): Set<string> {
  const flags = new Set(COMMAND_FLAG_NAMES);
  for (const spec of OPTIONS) {
    if (!spec.cli) continue;
    flags.add(`--${spec.cli.long}`);
    if (spec.cli.short) flags.add(`-${spec.cli.short}`);
  }
  return flags;
}

interface DocMention {
  readonly doc: string;
  readonly line: number;
  readonly text: string;
}

/**
 * Flags and `key =` assignments a doc names where a reader would copy them: inline code,
 * and fenced blocks (shell blocks only on lines that run unhitch; config blocks whole).
 * benchmarks.md describes the bench scripts' own flags, so only its unhitch lines count.
 */
function optionMentions(doc: string, text: string): { flags: DocMention[]; keys: DocMention[] } {
  const flags: DocMention[] = [];
  const keys: DocMention[] = [];
  const onlyUnhitchLines = doc.endsWith('benchmarks.md');
  let fence: string | undefined;
  text.split('\n').forEach((line, index) => {
    const at = (found: string): DocMention => ({ doc, line: index + 1, text: found });
    const opening = /^\s*```(\w*)/.exec(line);
    if (opening) {
      fence = fence === undefined ? (opening[1] ?? '') : undefined;
      return;
    }
    const runsUnhitch = RUNS_UNHITCH.test(line);
    if (fence !== undefined) {
      const shell = ['sh', 'bash', 'shell', 'console'].includes(fence);
      if (runsUnhitch)
        for (const match of line.matchAll(/(?<![\w-])--?[a-zA-Z][\w-]*/g)) flags.push(at(match[0]));
      if (!shell) {
        const key = /^\s*([a-z][a-z0-9]*(?:-[a-z0-9]+)*)\s*=/.exec(line.replace(/#.*/, ''));
        if (key?.[1]) keys.push(at(key[1]));
      }
      return;
    }
    for (const span of line.matchAll(/`([^`]+)`/g)) {
      const inner = span[1] ?? '';
      const flag = /^(--?[a-zA-Z][\w-]*)/.exec(inner)?.[1];
      if (flag && !onlyUnhitchLines) flags.push(at(flag));
      if (RUNS_UNHITCH.test(inner))
        for (const match of inner.matchAll(/(?<![\w-])--?[a-zA-Z][\w-]*/g))
          flags.push(at(match[0]));
      const key = /^([a-z][a-z0-9]*(?:-[a-z0-9]+)*)\s*=\s*\S/.exec(inner);
      if (key?.[1]) keys.push(at(key[1]));
    }
  });
  return { flags, keys };
}

/** A command line that runs unhitch (not one that merely names it, as systemctl does). */
const RUNS_UNHITCH =
  /^\s*(?:\$\s*)?(?:sudo\s+)?(?:npx\s+)?(?:unhitch|node\s+dist\/src\/cli\.js)(?:\s|$)/;

function docs(): Array<{ doc: string; text: string }> {
  const docDir = join(ROOT, 'docs');
  return [
    'README.md',
    ...readdirSync(docDir)
      .filter((name) => name.endsWith('.md'))
      .map((name) => `docs/${name}`),
  ].map((doc) => ({ doc, text: readFileSync(join(ROOT, doc), 'utf8') }));
}

test('README.md and docs/*.md name no flag and no option that does not exist', () => {
  const flags = knownFlags();
  const problems: string[] = [];
  for (const { doc, text } of docs()) {
    const found = optionMentions(doc, text);
    for (const mention of found.flags) {
      // --acme-NAME, --FLAG: placeholders, not flags.
      const placeholder = /^--.*[A-Z]/.test(mention.text);
      if (!placeholder && !flags.has(mention.text) && !FOREIGN_FLAGS.has(mention.text))
        problems.push(`${mention.doc}:${mention.line}: no flag ${mention.text}`);
    }
    for (const mention of found.keys) {
      if (!NAMES.has(mention.text))
        problems.push(`${mention.doc}:${mention.line}: no option '${mention.text} ='`);
    }
  }
  assert.deepEqual(problems, []);
});

test('the docs check catches a made-up flag and a made-up key, in prose and in blocks', () => {
  const text = [
    'Set `--foo-bar=1` or `foo-bar = on`; `--workers=2` and `workers = 2` exist.',
    '```',
    'frobnicate = on',
    'backend = "[127.0.0.1]:8000"',
    '```',
    '```sh',
    'unhitch --config=x.conf --no-such-flag',
    'other-tool --whatever',
    'x=1',
    '```',
  ].join('\n');
  const found = optionMentions('docs/example.md', text);
  const flags = knownFlags();
  assert.deepEqual(
    found.flags.filter((mention) => !flags.has(mention.text)).map((mention) => mention.text),
    ['--foo-bar', '--no-such-flag'],
  );
  assert.deepEqual(
    found.keys.filter((mention) => !NAMES.has(mention.text)).map((mention) => mention.text),
    ['foo-bar', 'frobnicate'],
  );
});

test('README.md fits in 16 KB: a landing page, the reference lives in docs/', () => {
  const size = readFileSync(join(ROOT, 'README.md')).length;
  assert.ok(size <= 16 * 1024, `README.md is ${size} bytes`);
});
