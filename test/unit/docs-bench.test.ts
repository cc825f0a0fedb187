/** The cost tables (README, docs/benchmarks.md) are generated from bench/RESULTS.md (docs/generate/cost-table.ts). */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  COST_TABLE_PAGES,
  costTable,
  RESULTS_PATH,
  withCostTable,
} from '../../docs/generate/cost-table.js';

/** The cost table's body rows, each as its trimmed cells (the first is empty). */
function tableRows(results: string, view?: 'full' | 'short'): string[][] {
  return costTable(results, view)
    .split('\n')
    .slice(2)
    .map((line) => line.split('|').map((cell) => cell.trim()));
}

test('README.md and docs/benchmarks.md hold the cost tables generated from bench/RESULTS.md (npm run docs:bench)', () => {
  const results = readFileSync(RESULTS_PATH, 'utf8');
  for (const { path, view } of COST_TABLE_PAGES) {
    const page = readFileSync(path, 'utf8');
    assert.equal(page, withCostTable(page, results, view), `${path}: run \`npm run docs:bench\``);
  }
});

test('the cost table takes each figure from its section, ratio to Hitch included unless the row is marked noisy', () => {
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
  const rows = tableRows(results);
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
  // ... and, like its bench's ratio line, its ratio is withheld.
  assert.deepEqual(find('CPU per HTTPS')?.slice(2, 4), ['40.0 µs', '30.0 µs']);
  assert.equal(find('CPU per HTTPS')?.[7], '–');
  // A flagged section's rows say so; the others do not.
  assert.match(find('Memory per idle')?.[1] ?? '', /loaded machine, noisy$/);
  assert.doesNotMatch(messages[1] ?? '', /loaded machine/);
  const memory = find('Memory per idle');
  assert.deepEqual(memory?.slice(2, 5), ['–', '–', '18.5 KiB']);
  assert.equal(memory?.[7], '–');
  assert.throws(() => withCostTable('no markers', results), /lacks/);
});

test("README's short table keeps the equal-load, memory and under-load rows, three proxies, each load named", () => {
  const results = readFileSync(RESULTS_PATH, 'utf8');
  const short = costTable(results, 'short');
  const [header, , ...rows] = short.split('\n');
  assert.deepEqual(
    header
      ?.split('|')
      .map((cell) => cell.trim())
      .filter(Boolean),
    ['Cost', 'unhitch', 'Hitch', 'HAProxy', 'unhitch / Hitch'],
  );
  const labels = rows.map((row) => row.split('|')[1]?.trim() ?? '');
  assert.ok(
    labels.some((label) => /^CPU per relayed message, equal load \(\d+ % = /.test(label)),
    short,
  );
  assert.ok(
    labels.some((label) => /^CPU per full TLS 1\.3 handshake, equal load/.test(label)),
    short,
  );
  assert.ok(
    labels.some((label) => /^Memory per idle/.test(label)),
    short,
  );
  assert.ok(
    labels.some((label) => /^Round trip p99\.9 under load/.test(label)),
    short,
  );
  assert.ok(!labels.some((label) => /saturation|idle connection \(/.test(label)), short);
  // The short table is a subset of the full one's figures, not other numbers.
  const full = costTable(results, 'full');
  for (const row of rows) {
    const unhitch = row.split('|')[2]?.trim() ?? '';
    assert.ok(full.includes(unhitch), `${unhitch} is in the full table`);
  }
});

test('the storm rows come first, from the largest size, and say to trust them over the rate-based rows', () => {
  const table = (
    size: string,
    mode: string,
    cells: readonly [string, string, string],
  ): string[] => [
    `### ${size} connections, ${mode}`,
    '',
    '| Connections | Reconnect | Proxy | Proxy CPU µs/reconnect | Other load on proxy CPU % (max) |',
    '| --- | --- | --- | --- | --- |',
    `| ${size} | ${mode} | unhitch | ${cells[0]} | 2 |`,
    `| ${size} | ${mode} | hitch | ${cells[1]} | 1 |`,
    `| ${size} | ${mode} | node-tls | ${cells[2]} | 0 |`,
    '',
  ];
  const results = [
    '<!-- bench:reconnect-storm:begin -->',
    '## reconnect-storm',
    '',
    ...table('1,020', 'full', ['900', '600', '800']),
    ...table('1,020', 'resumed', ['700', '400', '600']),
    ...table('9,488', 'full', ['780', '600', '700']),
    ...table('9,488', 'resumed', ['500', '400', '560']),
    'ratio unhitch/hitch cpu-per-resumed-reconnect: 1.25',
    'ratio unhitch/hitch cpu-per-full-reconnect: 1.30',
    '<!-- bench:reconnect-storm:end -->',
    '<!-- bench:capacity:begin -->',
    '| Proxy | Proxy KiB/conn |',
    '| --- | --- |',
    '| haproxy | 18.5 |',
    '<!-- bench:capacity:end -->',
  ].join('\n');
  const full = tableRows(results, 'full');
  assert.match(full[0]?.[1] ?? '', /^CPU per resumed reconnect in a storm of 9,488 connections/);
  assert.match(full[0]?.[1] ?? '', /trust these rows over the rate-based handshake rows/);
  assert.deepEqual(full[0]?.slice(2, 6), ['500 µs', '400 µs', '–', '560 µs']);
  assert.equal(full[0]?.[7], '1.25');
  assert.match(full[1]?.[1] ?? '', /^CPU per full reconnect in a storm of 9,488 connections/);
  assert.deepEqual(full[1]?.slice(2, 4), ['780 µs', '600 µs']);
  assert.equal(full[1]?.[7], '1.30');
  const short = tableRows(results, 'short');
  assert.equal(
    short[0]?.[1],
    'CPU per resumed reconnect, storm of 9,488 connections (fixed work: trust over the handshake rows below)',
  );
  assert.deepEqual(short[1]?.slice(2, 5), ['780 µs', '600 µs', '–']);
  // Without a storm section there is no storm row (no stale figure).
  assert.ok(!costTable('', 'full').includes('storm'));
});

test('a ratio cell follows its own two rows, as reconnect-storm writes its ratio lines: a loaded row elsewhere in the section neither withholds nor marks it', () => {
  const storm = (size: string, mode: string, rows: ReadonlyArray<[string, string, string]>) => [
    `### ${size} connections, ${mode}`,
    '',
    '| Connections | Reconnect | Proxy | Proxy CPU µs/reconnect | Other load on proxy CPU % (max) |',
    '| --- | --- | --- | --- | --- |',
    ...rows.map(([proxy, cpu, other]) => `| ${size} | ${mode} | ${proxy} | ${cpu} | ${other} |`),
    '',
  ];
  const results = [
    '<!-- bench:reconnect-storm:begin -->',
    '## reconnect-storm',
    '',
    // A smaller storm's loaded row: it is in no line of the table.
    ...storm('1,020', 'resumed', [
      ['unhitch', '700', '11 UNRELIABLE'],
      ['hitch', '400', '2'],
    ]),
    ...storm('9,488', 'resumed', [
      ['unhitch', '500', '3'],
      ['hitch', '400', '2'],
    ]),
    // The naive pipe's row was loaded: the line shows it, the ratio does not divide it.
    ...storm('9,488', 'full', [
      ['unhitch', '780', '4'],
      ['hitch', '600', '1'],
      ['node-tls', '700', '30 UNRELIABLE'],
    ]),
    '- UNRELIABLE: other processes took more than 10 % of the proxy CPU in unhitch 1,020 resumed (11 %), node-tls 9,488 full (30 %); those rows are marked and a ratio line is written only from rows that are not. Rerun on a quiet machine.',
    'ratio unhitch/hitch cpu-per-resumed-reconnect: 1.25',
    'ratio unhitch/hitch cpu-per-full-reconnect: 1.30',
    '<!-- bench:reconnect-storm:end -->',
    '<!-- bench:equal-load:begin -->',
    '| Kind | Offered load | Proxy | Proxy CPU µs/unit | Other load on proxy CPU % (max) |',
    '| --- | --- | --- | --- | --- |',
    '| messages | 80 % = 160 announces/s | unhitch | 24.0 | 1 |',
    '| messages | 80 % = 160 announces/s | hitch | 20.0 | 12 UNRELIABLE |',
    '| full | 80 % = 90/s | unhitch | 1,200 | 0 |',
    '| full | 80 % = 90/s | hitch | 600 | 2 |',
    '<!-- bench:equal-load:end -->',
  ].join('\n');
  const find = (view: 'full' | 'short', prefix: string): string[] => {
    const row = tableRows(results, view).find((cells) => cells[1]?.startsWith(prefix));
    assert.ok(row, `${prefix} in ${costTable(results, view)}`);
    return row;
  };
  const last = (row: string[]): string | undefined => row.at(-2);

  // The storm's ratio cells are its ratio lines, although a 1,020 row was loaded.
  const resumed = find('full', 'CPU per resumed reconnect in a storm of 9,488');
  assert.doesNotMatch(resumed[1] ?? '', /noisy/);
  assert.equal(last(resumed), '1.25');
  const full = find('full', 'CPU per full reconnect in a storm of 9,488');
  assert.match(full[1] ?? '', /loaded machine, noisy$/);
  assert.equal(full[5], '700 µs');
  assert.equal(last(full), '1.30');
  // README's short table has no node-tls column: nothing it shows was loaded.
  const shortFull = find('short', 'CPU per full reconnect, storm of 9,488');
  assert.doesNotMatch(shortFull[1] ?? '', /noisy/);
  assert.equal(last(shortFull), '1.30');

  // Equal load: the loaded Hitch row withholds its own ratio, not the full-handshake one.
  const messages = find('full', 'CPU per relayed WebTorrent response at equal load');
  assert.match(messages[1] ?? '', /loaded machine, noisy$/);
  assert.equal(last(messages), '–');
  const handshakes = find('full', 'CPU per full TLS 1.3 handshake at equal load');
  assert.doesNotMatch(handshakes[1] ?? '', /noisy/);
  assert.equal(last(handshakes), '2.00');
});
