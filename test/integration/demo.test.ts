/**
 * `npm start` as the README promises it: certificate made on first run, a tracker behind
 * unhitch, the wss:// URL printed, announces answered, Ctrl-C stops everything.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { freePortPair } from '../helpers/ports.js';
import { announceOnce } from '../helpers/webtorrent.js';

const ROOT = resolve(import.meta.dirname, '../../..');

test('npm start: demo tracker answers announces over wss through unhitch', async (t) => {
  const cwd = mkdtempSync(join(tmpdir(), 'unhitch-demo-'));
  t.after(() => rmSync(cwd, { recursive: true, force: true }));
  const port = await freePortPair();
  const demo = spawn(process.execPath, [join(ROOT, 'dist/src/demo.js')], {
    cwd,
    env: { ...process.env, UNHITCH_DEMO_PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => demo.kill('SIGKILL'));
  let output = '';
  demo.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    output += chunk;
  });
  demo.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    output += chunk;
  });
  const url = `wss://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  while (!output.includes(url)) {
    assert.ok(Date.now() < deadline, `demo never printed ${url}:\n${output}`);
    assert.equal(demo.exitCode, null, `demo exited early:\n${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(existsSync(join(cwd, 'tmp/tls/cert.crt')), 'certificate made on first run');
  assert.ok(existsSync(join(cwd, 'tmp/tls/key.pem')));

  // The URL is printed once every worker listens: the first attempt must get through.
  const response = await announceOnce(url, 10_000).catch((error: Error) =>
    assert.fail(`first announce after the URL was printed failed: ${error.message}\n${output}`),
  );
  assert.ok(response, `no announce response through the demo:\n${output}`);
  assert.equal(response.action, 'announce');
  assert.equal(typeof response.interval, 'number');

  demo.kill('SIGINT');
  const code = await Promise.race([
    once(demo, 'exit').then(([exitCode]) => exitCode),
    new Promise((resolve) =>
      setTimeout(() => resolve('still running 20 s after SIGINT'), 20_000).unref(),
    ),
  ]);
  assert.equal(code, 0, output);
});
