import assert from 'node:assert/strict';
import { test } from 'node:test';
import { groupsChosen } from '../../bench/lib/groups.js';
import { REFERENCE_NOTES } from '../../bench/lib/references.js';
import { formatResultsSection, readSection, replaceSection } from '../../bench/lib/results-file.js';
import { barChartsSvg } from '../../bench/lib/svg.js';
import {
  cpuPerResponseRatioLine,
  formatCount,
  formatDecimal,
  formatRatio,
  formatResultTable,
  median,
  medianRow,
  parseMarkdownTable,
  parseResultTable,
  type ResultRow,
  ratioTo,
  withRatios,
} from '../../bench/lib/table.js';
import { classifyRaw, rawAnswerTo, rawStringField } from '../../bench/wt-load/protocol.js';
import { parseProcStat, parseVmRssKiB, processTree } from '../kit/proc.js';

const rows: ResultRow[] = [
  {
    backend: 'uws',
    proxy: 'none',
    responsesPerSecond: 40000,
    ratioToNoProxy: null,
    proxyCpuMicrosPerResponse: null,
    proxyKiBPerConnection: null,
    errors: 0,
  },
  {
    backend: 'uws',
    proxy: 'hitch',
    responsesPerSecond: 30000,
    ratioToNoProxy: null,
    proxyCpuMicrosPerResponse: 18.34,
    proxyKiBPerConnection: 51.02,
    errors: 3,
  },
];

test('numbers are formatted as in the seed table', () => {
  assert.equal(formatCount(1234567.6), '1,234,568');
  assert.equal(formatDecimal(18.349), '18.3');
  assert.equal(formatDecimal(null), '–');
  assert.equal(formatDecimal(Number.NaN), '–');
  assert.equal(formatRatio(0.75), '75.0 %');
  assert.equal(formatRatio(null), '–');
});

test('ratios come from the same backend without a proxy', () => {
  assert.equal(ratioTo(30, 40), 0.75);
  assert.equal(ratioTo(30, 0), null);
  assert.equal(ratioTo(30, undefined), null);
  const [none, hitch] = withRatios(rows);
  assert.equal(none?.ratioToNoProxy, 1);
  assert.equal(hitch?.ratioToNoProxy, 0.75);
  const orphan = withRatios([{ ...rows[1], backend: 'other' } as ResultRow]);
  assert.equal(orphan[0]?.ratioToNoProxy, null);
});

test('result table round-trips through format and parse', () => {
  const markdown = formatResultTable(withRatios(rows));
  assert.match(markdown, /^\| Backend \| Proxy +\| Responses\/s \| vs no proxy \|/);
  assert.match(markdown, /\| uws +\| hitch \| 30,000 +\| 75\.0 % +\| 18\.3 +\| 51\.0 +\| 3 +\|/);
  assert.match(markdown, /\n\| ------- \| ----- \| ----------- \|/);
  const parsed = parseResultTable(markdown);
  assert.equal(parsed.length, 2);
  assert.deepEqual(parsed[1], {
    backend: 'uws',
    proxy: 'hitch',
    responsesPerSecond: 30000,
    ratioToNoProxy: 0.75,
    proxyCpuMicrosPerResponse: 18.3,
    proxyKiBPerConnection: 51,
    errors: 3,
  });
  assert.equal(parsed[0]?.proxyCpuMicrosPerResponse, null);
  assert.equal(parseMarkdownTable(markdown).length, 3); // header + 2 rows, separator dropped
});

test('parsing rejects a table with another header', () => {
  assert.throws(() => parseResultTable('| A | B |\n| --- | --- |\n| 1 | 2 |'), {
    code: 'BENCH_TABLE_HEADER',
  });
});

test('RESULTS.md sections are replaced in place and others kept', () => {
  const first = replaceSection('', 'compare', 'table one');
  assert.match(first, /^# unhitch benchmark results/);
  assert.equal(readSection(first, 'compare'), 'table one');
  const both = replaceSection(first, 'handshake', 'hs');
  const updated = replaceSection(both, 'compare', 'table two');
  assert.equal(readSection(updated, 'compare'), 'table two');
  assert.equal(readSection(updated, 'handshake'), 'hs');
  assert.equal(updated.split('bench:compare:begin').length, 2);
  assert.ok(updated.indexOf('compare:begin') < updated.indexOf('handshake:begin'));
  assert.equal(readSection(updated, 'missing'), null);
});

test('/proc/PID/stat is parsed from the last parenthesis', () => {
  const stat = parseProcStat(
    '4242 (node (worker) x) S 4200 4242 4242 0 -1 4194304 100 0 0 0 150 25 0 0 20 0 11 0 1000',
  );
  assert.deepEqual(stat, { pid: 4242, ppid: 4200, cpuTicks: 175 });
  assert.equal(parseVmRssKiB('Name:\tnode\nVmRSS:\t   12345 kB\n'), 12345);
  assert.equal(parseVmRssKiB('Name:\tkthreadd\n'), 0);
});

test('process tree includes descendants only', () => {
  const stats = [
    { pid: 1, ppid: 0, cpuTicks: 0 },
    { pid: 10, ppid: 1, cpuTicks: 0 },
    { pid: 11, ppid: 10, cpuTicks: 0 },
    { pid: 12, ppid: 11, cpuTicks: 0 },
    { pid: 20, ppid: 1, cpuTicks: 0 },
  ];
  assert.deepEqual(processTree(10, stats), [10, 11, 12]);
  assert.deepEqual(processTree(99, stats), []);
});

test('wt-load answers offers by splicing raw JSON tokens', () => {
  const offer = JSON.stringify({
    action: 'announce',
    offer: { type: 'offer', sdp: 'v=0 "offer_id": fake' },
    offer_id: 'o\u0001"\\d',
    peer_id: 'p\u00ffer',
    info_hash: 'h'.repeat(20),
  });
  assert.equal(classifyRaw(offer), 'offer');
  assert.equal(rawStringField(offer, 'offer_id'), JSON.stringify('o\u0001"\\d'));
  const answer = rawAnswerTo(offer, JSON.stringify('me'), JSON.stringify('sdp'));
  assert.ok(answer);
  assert.deepEqual(JSON.parse(answer), {
    action: 'announce',
    info_hash: 'h'.repeat(20),
    peer_id: 'me',
    to_peer_id: 'p\u00ffer',
    offer_id: 'o\u0001"\\d',
    answer: { type: 'answer', sdp: 'sdp' },
  });
  assert.equal(classifyRaw('{"action":"announce","interval":120}'), 'announce');
  assert.equal(classifyRaw('{"failure reason":"x"}'), 'error');
  assert.equal(rawAnswerTo('{"offer":{}}', '"a"', '"b"'), null);
});

test('the SVG chart has a title, escaped labels and bars scaled to the largest value', () => {
  const svg = barChartsSvg([
    {
      title: 'CPU <per> response',
      unit: 'µs',
      bars: [
        { label: 'uws × hitch & co', value: 10 },
        { label: 'uws × unhitch', value: 20 },
      ],
    },
  ]);
  assert.match(svg, /^<svg [^>]*role="img"/);
  assert.match(svg, /<title>CPU &lt;per&gt; response<\/title>/);
  assert.match(svg, /uws × hitch &amp; co/);
  const widths = [...svg.matchAll(/<rect x="230" y="\d+" width="([\d.]+)"/g)].map((m) =>
    Number(m[1]),
  );
  assert.equal(widths.length, 2);
  assert.equal(widths[1], (widths[0] ?? 0) * 2);
});

test('repeated runs reduce to the median of each metric with errors summed', () => {
  assert.equal(median([3, null, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([null, Number.NaN]), null);
  const base = rows[1] as ResultRow;
  const row = medianRow([
    { ...base, responsesPerSecond: 100, proxyCpuMicrosPerResponse: 30, errors: 1 },
    { ...base, responsesPerSecond: 300, proxyCpuMicrosPerResponse: 10, errors: 0 },
    { ...base, responsesPerSecond: 200, proxyCpuMicrosPerResponse: null, errors: 2 },
  ]);
  assert.equal(row.responsesPerSecond, 200);
  assert.equal(row.proxyCpuMicrosPerResponse, 20);
  assert.equal(row.errors, 3);
  assert.throws(() => medianRow([]), { code: 'BENCH_NO_RUNS' });
});

test('/proc/stat busy time of one CPU excludes idle and iowait', async () => {
  const { parseCpuBusyMicros, clockTicksPerSecond } = await import('../kit/proc.js');
  const text = 'cpu  9 9 9 9 9 9 9 9\ncpu0 1 0 1 50 5 0 0 0\ncpu1 10 1 4 80 7 2 3 1 0 0\n';
  assert.equal(parseCpuBusyMicros(text, 1), (21 * 1_000_000) / clockTicksPerSecond());
  assert.equal(parseCpuBusyMicros(text, 7), null);
});

test('the headline ratio line: unhitch over Hitch CPU per response, same backend, two decimals', () => {
  const unhitch: ResultRow = {
    ...(rows[1] as ResultRow),
    proxy: 'unhitch',
    proxyCpuMicrosPerResponse: 17.06,
  };
  const otherBackend: ResultRow = {
    ...unhitch,
    backend: 'bittorrent-tracker',
    proxyCpuMicrosPerResponse: 99,
  };
  assert.equal(
    cpuPerResponseRatioLine([...rows, otherBackend, unhitch]),
    'saturation ratio unhitch/hitch cpu-per-response: 0.93 (closed loop, each proxy at its own rate; bench/equal-load gives the comparable ratio)',
  );
  // The equal-load ratio line starts with `ratio unhitch/hitch`; a closed-loop one must not.
  assert.match(
    cpuPerResponseRatioLine([...rows, unhitch]) ?? '',
    /^saturation ratio unhitch\/hitch cpu-per-response: \d+\.\d\d \(closed loop/,
  );
  // No Hitch row (not installed), or no CPU figure for it: no headline rather than a wrong one.
  assert.equal(cpuPerResponseRatioLine([unhitch]), null);
  assert.equal(
    cpuPerResponseRatioLine([
      { ...(rows[1] as ResultRow), proxyCpuMicrosPerResponse: null },
      unhitch,
    ]),
    null,
  );
});

test('a results section: heading, command, machine, notes, blocks with a blank line after each, skipped, references', () => {
  const lines = formatResultsSection({
    heading: '## demo: a section',
    notes: ['- Layout: here'],
    blocks: ['| a |\n| - |', 'ratio x: 1.00'],
    skipped: ['hitch: not installed'],
    references: true,
  }).split('\n');
  assert.equal(lines[0], '## demo: a section');
  assert.equal(lines[1], '');
  assert.match(lines[2] ?? '', /^Command: `node /);
  const notesAt = lines.indexOf('- Layout: here');
  assert.equal(lines[3], '');
  // The machine description's bullets, then the notes.
  assert.ok(notesAt > 4 && lines.slice(4, notesAt).every((line) => line.startsWith('- ')));
  assert.deepEqual(lines.slice(notesAt + 1), [
    '',
    '| a |',
    '| - |',
    '',
    'ratio x: 1.00',
    '',
    'Skipped:',
    '- hitch: not installed',
    '',
    REFERENCE_NOTES,
  ]);
  const bare = formatResultsSection({ heading: '## b', notes: [], blocks: ['t'] });
  assert.ok(bare.endsWith('\n\nt\n'), 'no skipped list, no references when not asked for');
});

test('the equal-load ratio lines: unhitch over Hitch at the same offered rate, saying so', async () => {
  const { equalLoadRatioLine } = await import('../../bench/lib/table.js');
  assert.equal(
    equalLoadRatioLine('messages', 22.5, 20, '80 % of the slowest maximum'),
    'ratio unhitch/hitch cpu-per-response: 1.13 (equal load: 80 % of the slowest maximum)',
  );
  assert.equal(
    equalLoadRatioLine('full', 500, 400, 'x'),
    'ratio unhitch/hitch cpu-per-full-handshake: 1.25 (equal load: x)',
  );
  assert.equal(
    equalLoadRatioLine('resumed', 300, 400, 'x'),
    'ratio unhitch/hitch cpu-per-resumed-handshake: 0.75 (equal load: x)',
  );
  assert.equal(equalLoadRatioLine('full', null, 400, 'x'), null);
  assert.equal(equalLoadRatioLine('full', 500, null, 'x'), null);
  assert.equal(equalLoadRatioLine('full', 500, 0, 'x'), null);
});

test('groupsChosen: every group chosen in any run, once, sorted; nothing for runs without handshakes', () => {
  assert.equal(
    groupsChosen([{ X25519MLKEM768: 3 }, { X25519: 1, X25519MLKEM768: 2 }, undefined]),
    'X25519, X25519MLKEM768',
  );
  assert.equal(groupsChosen([{}, undefined]), '');
});
