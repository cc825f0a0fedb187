/** README's cost table is generated from bench/RESULTS.md (docs/generate/cost-table.ts). */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  costTable,
  README_PATH,
  RESULTS_PATH,
  withCostTable,
} from '../../docs/generate/cost-table.js';

test('README.md holds the cost table generated from bench/RESULTS.md (npm run docs:bench)', () => {
  const readme = readFileSync(README_PATH, 'utf8');
  const results = readFileSync(RESULTS_PATH, 'utf8');
  assert.equal(readme, withCostTable(readme, results), 'run `npm run docs:bench`');
});

test('the cost table takes each figure from its section, ratio to Hitch included', () => {
  const results = [
    '<!-- bench:equal-load:begin -->',
    '## equal-load',
    '',
    '| Kind | Offered load | Proxy | Proxy CPU µs/unit |',
    '| --- | --- | --- | --- |',
    '| messages | saturation (own max) | unhitch | 9.0 |',
    '| messages | 50 % = 100 announces/s | unhitch | 30.0 |',
    '| messages | 80 % = 160 announces/s | unhitch | 24.0 |',
    '| messages | 80 % = 160 announces/s | hitch | 20.0 |',
    '| full | 80 % = 90/s | unhitch | 1,200.4 |',
    '| full | 80 % = 90/s | hitch | 600.0 |',
    '<!-- bench:equal-load:end -->',
    '<!-- bench:capacity:begin -->',
    '- LOADED MACHINE: other sessions ran tests meanwhile.',
    '',
    '| Proxy | Proxy KiB/conn |',
    '| --- | --- |',
    '| haproxy | 18.5 |',
    '<!-- bench:capacity:end -->',
    '<!-- bench:https:begin -->',
    '| Proxy | Proxy CPU µs/request | Other load on proxy CPU % |',
    '| --- | --- | --- |',
    '| unhitch | 40.0 | 3 |',
    '| hitch | 30.0 | 85 |',
    '<!-- bench:https:end -->',
  ].join('\n');
  const rows = costTable(results)
    .split('\n')
    .slice(2)
    .map((line) => line.split('|').map((cell) => cell.trim()));
  const find = (prefix: string): string[] | undefined =>
    rows.find((cells) => cells[1]?.startsWith(prefix));
  const messages = find('CPU per relayed WebTorrent response at equal load');
  assert.ok(messages, costTable(results));
  assert.match(messages[1] ?? '', /80 % = 160 announces\/s/);
  assert.deepEqual(messages.slice(2, 5), ['24.0 µs', '20.0 µs', '–']);
  assert.equal(messages[7], '1.20');
  const full = find('CPU per full TLS 1.3 handshake at equal load');
  assert.deepEqual(full?.slice(2, 4), ['1,200 µs', '600 µs']);
  assert.equal(full?.[7], '2.00');
  // A section that is absent gives no row, not an old figure; a missing proxy gives "–".
  assert.equal(find('CPU per resumed'), undefined);
  // Without a flag, the "other load" column says the run was noisy.
  assert.match(find('CPU per HTTPS')?.[1] ?? '', /loaded machine, noisy$/);
  // A flagged section's rows say so; the others do not.
  assert.match(find('Memory per idle')?.[1] ?? '', /loaded machine, noisy$/);
  assert.doesNotMatch(messages[1] ?? '', /loaded machine/);
  const memory = find('Memory per idle');
  assert.deepEqual(memory?.slice(2, 5), ['–', '–', '18.5 KiB']);
  assert.equal(memory?.[7], '–');
  assert.throws(() => withCostTable('no markers', results), /lacks/);
});
