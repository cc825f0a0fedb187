/**
 * What `npm pack` ships: no demo file, and every shipped module imports only node's own
 * modules, other shipped files and the package's `dependencies` — never a devDependency,
 * which an installed package does not have. Every dependency is used by shipped code.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { dirname, join, posix, resolve } from 'node:path';
import { test } from 'node:test';
import ts from 'typescript';
import { npmCommand } from '../helpers/npm.js';

const ROOT = resolve(import.meta.dirname, '../../..');

interface PackageJson {
  readonly bin: Record<string, string>;
  readonly dependencies: Record<string, string>;
  readonly devDependencies: Record<string, string>;
  readonly overrides?: Record<string, unknown>;
}

const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as PackageJson;

/** The files `npm pack` would put in the tarball (scripts skipped: dist/ is built). */
function packedFiles(): string[] {
  const [command, prefix] = npmCommand();
  const json = execFileSync(
    command,
    [...prefix, 'pack', '--dry-run', '--json', '--ignore-scripts'],
    {
      cwd: ROOT,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    },
  );
  const [pack] = JSON.parse(json) as Array<{ files: Array<{ path: string }> }>;
  assert.ok(pack, 'npm pack printed no package');
  return pack.files.map((file) => file.path);
}

/** "ws" → "ws"; "@scope/name/sub" → "@scope/name"; "bittorrent-tracker/server" → its package. */
function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return (specifier.startsWith('@') ? parts.slice(0, 2) : parts.slice(0, 1)).join('/');
}

const files = packedFiles();
const modules = files.filter((path) => path.endsWith('.js'));

test('npm pack ships the CLI and no demo file', () => {
  for (const bin of Object.values(manifest.bin))
    assert.ok(files.includes(posix.normalize(bin)), `bin ${bin} is packed`);
  const demo = files.filter((path) => /(^|\/)demo|make-demo/.test(path));
  assert.deepEqual(demo, [], 'demo files in the package');
});

test('shipped modules import only node built-ins, shipped files and dependencies', () => {
  const used = new Set<string>();
  const problems: string[] = [];
  for (const path of modules) {
    const source = readFileSync(join(ROOT, path), 'utf8');
    const { importedFiles } = ts.preProcessFile(source, true, true);
    for (const { fileName: specifier } of importedFiles) {
      if (specifier.startsWith('.')) {
        const target = posix.join(dirname(path), specifier);
        if (!files.includes(target)) problems.push(`${path} imports unshipped ${target}`);
      } else if (!isBuiltin(specifier)) {
        const name = packageName(specifier);
        used.add(name);
        if (manifest.devDependencies[name] !== undefined)
          problems.push(`${path} imports devDependency ${name}`);
        else if (manifest.dependencies[name] === undefined)
          problems.push(`${path} imports ${name}, not a dependency`);
      }
    }
  }
  assert.deepEqual(problems, []);
  const unused = Object.keys(manifest.dependencies).filter((name) => !used.has(name));
  assert.deepEqual(unused, [], 'dependencies no shipped module imports');
});

test('every dependency override in package.json is explained in docs/architecture.md', () => {
  const page = readFileSync(join(ROOT, 'docs/architecture.md'), 'utf8');
  for (const name of Object.keys(manifest.overrides ?? {}))
    assert.match(
      page,
      new RegExp(`overrides\`[^]*\`${name}\``),
      `architecture.md explains ${name}`,
    );
});
