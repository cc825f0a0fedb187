/**
 * test/ and bench/ share one kit (test/kit/): it is the only thing that crosses between them.
 * A bench imports from test/ only the kit; a test imports from bench/ only when the bench is
 * what it tests (bench-*.test.ts, wt-load-*.test.ts); the kit imports neither side. And the
 * kit holds the one freePort and the one certificate maker.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join, posix, relative, resolve } from 'node:path';
import { test } from 'node:test';
import ts from 'typescript';

const ROOT = resolve(import.meta.dirname, '../../..');

interface SourceFile {
  /** Relative to the repository, with forward slashes. */
  readonly path: string;
  readonly text: string;
}

/** Tests whose subject is the bench itself: they import the bench code they check. */
const BENCH_SUBJECT_TEST = /^(bench|wt-load)-[\w-]*\.test\.ts$/;

function side(path: string): 'kit' | 'test' | 'bench' | 'other' {
  if (path.startsWith('test/kit/')) return 'kit';
  if (path.startsWith('test/')) return 'test';
  if (path.startsWith('bench/')) return 'bench';
  return 'other';
}

/** Every relative import of `file`, as a repository path. */
function importedPaths(file: SourceFile): string[] {
  const { importedFiles } = ts.preProcessFile(file.text, true, true);
  return importedFiles
    .map((imported) => imported.fileName)
    .filter((specifier) => specifier.startsWith('.'))
    .map((specifier) => posix.normalize(posix.join(posix.dirname(file.path), specifier)));
}

/** "importer → imported" for every import that crosses between test/ and bench/ outside the kit. */
function crossImports(files: readonly SourceFile[]): string[] {
  const found: string[] = [];
  for (const file of files) {
    const from = side(file.path);
    for (const target of importedPaths(file)) {
      const to = side(target);
      const allowed =
        from === to ||
        to === 'other' ||
        (from === 'bench' && to === 'kit') ||
        (from === 'test' && to === 'kit') ||
        (from === 'test' && to === 'bench' && BENCH_SUBJECT_TEST.test(basename(file.path))) ||
        from === 'other';
      if (!allowed) found.push(`${file.path} → ${target}`);
    }
  }
  return found;
}

function sourcesUnder(directory: string): SourceFile[] {
  const entries = readdirSync(join(ROOT, directory), { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => {
      const path = relative(ROOT, join(entry.parentPath, entry.name)).split('\\').join('/');
      return { path, text: readFileSync(join(ROOT, path), 'utf8') };
    });
}

const tree = (): SourceFile[] => [...sourcesUnder('test'), ...sourcesUnder('bench')];

test('no import crosses between test/ and bench/ except through test/kit/', () => {
  assert.deepEqual(crossImports(tree()), []);
});

test('the check names each kind of crossing it forbids, and lets the allowed ones pass', () => {
  const file = (path: string, specifier: string): SourceFile => ({
    path,
    text: `import { x } from '${specifier}';\n`,
  });
  assert.deepEqual(
    crossImports([
      file('bench/churn.ts', '../test/helpers/proxy-fixture.js'),
      file('test/integration/soak.test.ts', '../../bench/lib/harness.js'),
      file('test/kit/ports.ts', '../../bench/lib/proxies.js'),
      file('test/kit/pki.ts', '../helpers/npm.js'),
    ]),
    [
      'bench/churn.ts → test/helpers/proxy-fixture.js',
      'test/integration/soak.test.ts → bench/lib/harness.js',
      'test/kit/ports.ts → bench/lib/proxies.js',
      'test/kit/pki.ts → test/helpers/npm.js',
    ],
  );
  assert.deepEqual(
    crossImports([
      file('bench/churn.ts', '../test/kit/proxy-fixture.js'),
      file('bench/lib/harness.ts', '../../test/kit/pki.js'),
      file('test/integration/soak.test.ts', '../kit/proc.js'),
      file('test/unit/bench-table.test.ts', '../../bench/lib/table.js'),
      file('test/helpers/webtorrent.ts', '../kit/ports.js'),
      file('test/kit/pki.ts', '../../src/tls/selfsigned.js'),
    ]),
    [],
  );
});

/** Files that define a function of this name (declaration or exported arrow). */
function definers(files: readonly SourceFile[], name: RegExp): string[] {
  const definition = new RegExp(
    `(function\\s+${name.source}\\s*[(<]|const\\s+${name.source}\\s*=\\s*(async\\s*)?\\()`,
  );
  return files.filter((file) => definition.test(file.text)).map((file) => file.path);
}

test('one freePort and one certificate maker, both in the kit', () => {
  const files = tree();
  assert.deepEqual(definers(files, /freePort/), ['test/kit/ports.ts']);
  assert.deepEqual(definers(files, /waitForPort/), ['test/kit/ports.ts']);
  // makeCertificate, makeCa, makeSelfSignedCertificate, makeCaSignedCertificate, ...
  assert.deepEqual([...new Set(definers(files, /make\w*(Cert|Ca)\w*/))], ['test/kit/pki.ts']);
});
