/**
 * bench/abuse's pure parts: the verdict against the target, the ClientHello cut into 1-byte
 * records, the latency quantile, and README's short abuse table generated from RESULTS.md
 * (docs/generate/abuse-table.ts, run by `npm run docs:bench`).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { ABUSE_TABLE_HEADER, verdict } from '../../bench/lib/abuse-kinds.js';
import { quantile } from '../../bench/lib/abuse-legit.js';
import {
  captureClientHello,
  firstRecordLength,
  oneByteRecords,
} from '../../bench/lib/client-hello.js';
import { parseTcpExt } from '../../bench/lib/netstat.js';
import { formatMarkdownTable } from '../../bench/lib/table.js';
import { abuseTable, withAbuseTable } from '../../docs/generate/abuse-table.js';
import { README_PATH, RESULTS_PATH } from '../../docs/generate/cost-table.js';

test('README holds the abuse table generated from bench/RESULTS.md (npm run docs:bench)', () => {
  const readme = readFileSync(README_PATH, 'utf8');
  const results = readFileSync(RESULTS_PATH, 'utf8');
  assert.equal(readme, withAbuseTable(readme, results), 'run `npm run docs:bench`');
});

test('verdict: every session served and p99 within 2× the attack-free run', () => {
  const served = { sessions: 100, succeeded: 100, handshakeP99Ms: 10 };
  assert.equal(verdict(served, 5, false), 'PASS');
  assert.equal(verdict(served, 4.9, false), 'FAIL');
  assert.equal(verdict({ ...served, succeeded: 99 }, 50, false), 'FAIL');
  assert.equal(verdict({ ...served, sessions: 0, succeeded: 0 }, 50, false), 'FAIL');
  // The baseline is its own reference; without one, no verdict on the tail.
  assert.equal(verdict(served, null, true), 'PASS');
  assert.equal(verdict(served, null, false), '–');
});

test('parseTcpExt: the TcpExt counters by name, other protocol lines ignored', () => {
  const netstat = [
    'TcpExt: SyncookiesSent ListenOverflows ListenDrops',
    'TcpExt: 3 17 19',
    'IpExt: InNoRoutes InTruncatedPkts',
    'IpExt: 0 0',
    '',
  ].join('\n');
  const counters = parseTcpExt(netstat);
  assert.equal(counters.get('ListenDrops'), 19);
  assert.equal(counters.get('ListenOverflows'), 17);
  assert.equal(counters.get('InNoRoutes'), undefined);
  assert.equal(parseTcpExt('').size, 0);
});

test('quantile: nearest rank', () => {
  const sorted = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(quantile(sorted, 0.5), 50);
  assert.equal(quantile(sorted, 0.99), 99);
  assert.equal(quantile([7], 0.99), 7);
  assert.equal(quantile([], 0.5), null);
});

test('a captured ClientHello cut into 1-byte records carries the same handshake bytes', async () => {
  const hello = await captureClientHello();
  assert.equal(hello[0], 0x16, 'a handshake record');
  assert.equal(hello[5], 0x01, 'holding a ClientHello');
  assert.equal(firstRecordLength(hello), hello.length);
  assert.equal(firstRecordLength(hello.subarray(0, hello.length - 1)), null);
  const records = oneByteRecords(hello);
  assert.equal(records.length, hello.length - 5);
  for (const record of records) {
    assert.equal(record.length, 6);
    assert.equal(record[0], 0x16);
    assert.equal(record.readUInt16BE(3), 1);
  }
  assert.deepEqual(Buffer.concat(records.map((record) => record.subarray(5))), hello.subarray(5));
  assert.throws(() => oneByteRecords(Buffer.from('GET / HTTP/1.1\r\n')), /not a TLS handshake/);
});

test('the short abuse table: one row per attack, a cell per proxy, "–" where none ran', () => {
  const row = (attack: string, proxy: string, success: string, p99: string, verdictCell: string) =>
    ABUSE_TABLE_HEADER.map((column) => {
      switch (column) {
        case 'Attack':
          return attack;
        case 'Proxy':
          return proxy;
        case 'Legit success %':
          return success;
        case 'Handshake p99 ms':
          return p99;
        case 'Verdict':
          return verdictCell;
        default:
          return '1';
      }
    });
  const table = formatMarkdownTable(
    [...ABUSE_TABLE_HEADER],
    [
      row('no attack (baseline)', 'unhitch-limits', '100.0', '4.0', 'PASS'),
      row('handshake flood', 'unhitch-limits', '100.0', '6.0', 'PASS'),
      row('no attack (baseline)', 'hitch', '100.0', '5.0', 'PASS'),
      row('handshake flood', 'hitch', '92.5 (30 at handshake)', '900.0', 'FAIL'),
    ],
  );
  const results = [
    '<!-- bench:abuse:begin -->',
    '## abuse',
    '',
    'Command: `node dist/bench/abuse.js --update-results`',
    '',
    table,
    '',
    '| Other | table |',
    '| --- | --- |',
    '<!-- bench:abuse:end -->',
  ].join('\n');
  const short = abuseTable(results);
  const lines = short.split('\n').filter((line) => line.startsWith('|'));
  assert.match(lines[0] ?? '', /unhitch, limits on .*unhitch, drop-in .*Hitch .*HAProxy/);
  const flood = lines
    .find((line) => line.startsWith('| handshake flood'))
    ?.split('|')
    .map((cell) => cell.trim());
  assert.deepEqual(flood?.slice(2, 6), [
    '100.0 %, p99 6.0 ms, PASS',
    '–',
    '92.5 %, p99 900.0 ms, FAIL',
    '–',
  ]);
  assert.match(short, /From `bench\/RESULTS.md` \(`node dist\/bench\/abuse.js --update-results`\)/);
  assert.doesNotMatch(short, /UNRELIABLE/);
  assert.match(abuseTable(results.replace('| 1 ', '| 40 UNRELIABLE ')), /UNRELIABLE/);
  // Without the section, a placeholder rather than an old figure.
  assert.match(abuseTable(''), /Not measured yet/);
  assert.throws(() => withAbuseTable('no markers', results), /lacks/);
});
