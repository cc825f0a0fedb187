/**
 * The bench harness end to end, briefly: scripts built on bench/lib/harness.ts run, print
 * their table, write nothing with --no-write, and fail with "<name>: <message>" and status 1
 * on a bad flag. A second of load each; no figure is judged.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT } from '../../bench/lib/proxies.js';

const RESULTS_MD = join(REPO_ROOT, 'bench', 'RESULTS.md');

function bench(
  script: string,
  args: readonly string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(REPO_ROOT, 'dist', 'bench', `${script}.js`), ...args],
      { timeout: 60_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

test('https.js and latency.js run through the harness: table on stdout, RESULTS.md untouched', async () => {
  const before = readFileSync(RESULTS_MD, 'utf8');
  const https = await bench('https', ['--proxies=none', '--duration=1', '--no-write']);
  assert.equal(https.code, 0, https.stderr);
  assert.match(https.stdout, /^\n\| Proxy +\| Requests\/s +\| vs no proxy/);
  assert.match(https.stdout, /^\| none +\| [\d,]+ +\| 100\.0 % +\|/m);
  const latency = await bench('latency', [
    '--proxies=none',
    '--duration=1',
    '--warmup=0',
    '--no-write',
  ]);
  assert.equal(latency.code, 0, latency.stderr);
  assert.match(latency.stdout, /^\n\| Proxy +\| Round trips +\| p50 µs/);
  assert.match(latency.stdout, /^\| none +\| [\d,]+ +\|/m);
  assert.equal(readFileSync(RESULTS_MD, 'utf8'), before, '--no-write wrote RESULTS.md');
});

test('a bench script refuses an unknown flag: status 1, its name and the known flags', async () => {
  const result = await bench('handshake', ['--bogus=1']);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /^handshake: unknown argument --bogus=1; known: --proxies, /m);
  assert.equal(result.stdout, '');
});
