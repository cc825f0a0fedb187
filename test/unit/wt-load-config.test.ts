/**
 * The wt-load configuration the docs point at exists and is a valid load.toml: every
 * `--config=` of wt-load and `--wt-load-config=` they show names a file that parses.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import {
  configFromArgs,
  DEFAULT_CONFIG,
  parseConfigToml,
  validate,
} from '../../bench/wt-load/config.js';

const ROOT = resolve(import.meta.dirname, '../../..');
const DOCS = ['README.md', 'docs/benchmarks.md', 'bench/README.md'];
const REFERENCE = /(?:wt-load\/main\.js --config=|--wt-load-config=)([^\s`]+)/g;

function referencedConfigs(): Map<string, string> {
  const byPath = new Map<string, string>();
  for (const doc of DOCS) {
    for (const match of readFileSync(join(ROOT, doc), 'utf8').matchAll(REFERENCE)) {
      if (match[1] !== undefined) byPath.set(match[1], doc);
    }
  }
  return byPath;
}

test('every load.toml the READMEs name exists and parses as a wt-load configuration', () => {
  const configs = referencedConfigs();
  assert.ok(configs.size > 0, 'the READMEs name no wt-load configuration');
  for (const [path, doc] of configs) {
    let text: string;
    try {
      text = readFileSync(join(ROOT, path), 'utf8');
    } catch (error) {
      assert.fail(`${doc} names ${path}: ${(error as Error).message}`);
    }
    const config = parseConfigToml(text);
    validate(config);
    // The file's own values are read, not the defaults.
    assert.notDeepEqual(config, DEFAULT_CONFIG, `${path} changes nothing`);
  }
});

test('bench/wt-load/load.toml holds the values compare.js runs with', () => {
  const config = parseConfigToml(readFileSync(join(ROOT, 'bench/wt-load/load.toml'), 'utf8'));
  assert.equal(config.num_workers * config.num_connections_per_worker, 1020);
  assert.equal(config.duration, 15);
  assert.equal(config.warmup, 3);
  assert.equal(config.torrents.offers_per_request, 10);
});

test('announce_rate: closed loop by default, set from the file or --announce-rate, never negative', () => {
  assert.equal(DEFAULT_CONFIG.announce_rate, 0);
  assert.equal(configFromArgs(['--announce-rate=250']).announce_rate, 250);
  assert.equal(configFromArgs(['--rate=40']).announce_rate, 40);
  assert.equal(parseConfigToml('announce_rate = 75').announce_rate, 75);
  assert.throws(() => configFromArgs(['--announce-rate=-1']), { code: 'WT_LOAD_CONFIG' });
  assert.throws(() => configFromArgs(['--announce-rate=fast']), { code: 'WT_LOAD_CONFIG' });
});
