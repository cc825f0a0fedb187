/**
 * wt-load end to end, briefly: against bittorrent-tracker directly, and through unhitch when
 * it is built; the latency client through unhitch. Each run is a few seconds; every process started here is stopped by PID.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { builtinBackend, type RunningBackend, startBackend } from '../../bench/lib/backends.js';
import { HYBRID_AS_NAMED } from '../../bench/lib/groups.js';
import { runMeasuredChild } from '../../bench/lib/measured-child.js';
import { startProcess, stopAll, untilReady } from '../../bench/lib/processes.js';
import { REPO_ROOT, startProxy, UNHITCH_CLI } from '../../bench/lib/proxies.js';
import { DEFAULT_CONFIG, type LoadConfig } from '../../bench/wt-load/config.js';
import { runLoad } from '../../bench/wt-load/run.js';
import { makeCertificate } from '../kit/pki.js';
import { freePort, waitForPort } from '../kit/ports.js';

const workDirectory = mkdtempSync(join(tmpdir(), 'bench-smoke-'));
after(async () => {
  await stopAll();
  rmSync(workDirectory, { recursive: true, force: true });
});

/** Runs `node dist/bench/<script> …args` to its exit (asserted 0); its stdout lines. */
async function benchScriptLines(script: string, args: readonly string[]): Promise<string[]> {
  const lines: string[] = [];
  const run = startProcess({
    name: script,
    command: process.execPath,
    args: [join(REPO_ROOT, 'dist', 'bench', script), ...args],
    onStdoutLine: (line) => lines.push(line),
  });
  assert.equal(await run.exited, 0, run.stderrTail());
  return lines;
}

function shortLoad(url: string): LoadConfig {
  return {
    ...DEFAULT_CONFIG,
    url,
    num_workers: 1,
    num_connections_per_worker: 20,
    connection_creation_interval_ms: 5,
    duration: 2,
    warmup: 0.5,
    max_connect_seconds: 5,
    torrents: { ...DEFAULT_CONFIG.torrents, number_of_torrents: 5, offers_per_request: 3 },
  };
}

test('wt-load against bittorrent-tracker directly gets announces, offers and answers', async () => {
  const backend: RunningBackend = await startBackend(builtinBackend('bittorrent-tracker'));
  try {
    const result = await runLoad(shortLoad(`ws://127.0.0.1:${backend.port}`));
    assert.equal(result.connectionsOpen, 20);
    assert.ok(result.responses > 0, 'no responses');
    assert.ok(result.responsesPerSecondByKind.announce > 0, 'no announce responses');
    assert.ok(result.responsesPerSecondByKind.offer > 0, 'no offers relayed');
    assert.ok(result.responsesPerSecondByKind.answer > 0, 'no answers relayed');
    assert.equal(result.errors, 0);
  } finally {
    await backend.process.stop();
  }
});

test('wt-load through unhitch (wss) gets responses without errors', {
  skip: existsSync(UNHITCH_CLI) ? false : `${UNHITCH_CLI} not built`,
}, async () => {
  const certificate = makeCertificate('bench', ['localhost'], workDirectory);
  const backend = await startBackend(builtinBackend('bittorrent-tracker'));
  try {
    const proxy = await startProxy('unhitch', {
      frontendPort: await freePort(),
      backendPort: backend.port,
      combinedPemPath: certificate.combinedPath,
      workDirectory,
    });
    try {
      const result = await runLoad(shortLoad(`wss://127.0.0.1:${proxy.port}`));
      assert.equal(result.connectionsOpen, 20);
      assert.ok(result.responses > 0, 'no responses through unhitch');
      assert.ok(result.responsesPerSecondByKind.offer > 0, 'no offers through unhitch');
      assert.equal(result.errors, 0);
    } finally {
      await proxy.process?.stop();
    }
  } finally {
    await backend.process.stop();
  }
});

test('latency client: round trips through unhitch to an echo backend, none lost', {
  skip: existsSync(UNHITCH_CLI) ? false : `${UNHITCH_CLI} not built`,
}, async () => {
  const certificate = makeCertificate('bench', ['localhost'], workDirectory);
  const echoPort = await freePort();
  const echo = startProcess({
    name: 'tcp-echo',
    command: process.execPath,
    args: [join(REPO_ROOT, 'dist', 'bench', 'backends', 'tcp-echo.js'), String(echoPort)],
  });
  await untilReady(echo, waitForPort(echoPort));
  try {
    const proxy = await startProxy('unhitch', {
      frontendPort: await freePort(),
      backendPort: echoPort,
      combinedPemPath: certificate.combinedPath,
      workDirectory,
    });
    try {
      const measured = await runMeasuredChild<{
        roundTrips: number;
        failures: number;
        p50Micros: number;
        p99Micros: number;
      }>({
        name: 'latency-client',
        command: process.execPath,
        args: [
          join(REPO_ROOT, 'dist', 'bench', 'lib', 'latency-client.js'),
          `--port=${proxy.port}`,
          '--tls',
          '--connections=2',
          '--warmup=0.3',
          '--duration=1',
        ],
        proxyPid: proxy.process?.pid ?? null,
      });
      const r = measured.result;
      assert.ok(r.roundTrips > 50, `only ${r.roundTrips} round trips`);
      assert.equal(r.failures, 0);
      assert.ok(r.p50Micros > 0 && r.p50Micros <= r.p99Micros, JSON.stringify(r));
      assert.ok((measured.proxyCpuMicros ?? 0) > 0, 'proxy CPU measured over the window');
    } finally {
      await proxy.process?.stop();
    }
  } finally {
    await echo.stop();
  }
});

test('wt-load open loop: announces leave at the offered rate, not at the backend pace', async () => {
  const backend = await startBackend(builtinBackend('bittorrent-tracker'));
  try {
    const rate = 100;
    const result = await runLoad({
      ...shortLoad(`ws://127.0.0.1:${backend.port}`),
      announce_rate: rate,
    });
    assert.equal(result.connectionsOpen, 20);
    assert.equal(result.announceRateOffered, rate);
    // Closed loop, the same 20 connections get thousands of announce replies per second.
    const announces = result.responsesPerSecondByKind.announce;
    assert.ok(announces <= rate * 1.2, `${announces} announce replies/s for ${rate} offered`);
    assert.ok(
      announces + result.announcesMissed / result.measuredSeconds >= rate * 0.5,
      `only ${announces} announce replies/s and ${result.announcesMissed} missed for ${rate} offered`,
    );
    assert.ok(result.responsesPerSecondByKind.offer > 0, 'no offers relayed in open loop');
    assert.equal(result.errors, 0);
  } finally {
    await backend.process.stop();
  }
});

test('handshake client open loop: full and resumed handshakes at the offered rate through unhitch', {
  skip: existsSync(UNHITCH_CLI) ? false : `${UNHITCH_CLI} not built`,
}, async () => {
  const certificate = makeCertificate('bench', ['localhost'], workDirectory);
  const sinkPort = await freePort();
  const sink = startProcess({
    name: 'tcp-sink',
    command: process.execPath,
    args: [join(REPO_ROOT, 'dist', 'bench', 'backends', 'tcp-sink.js'), String(sinkPort)],
  });
  await untilReady(sink, waitForPort(sinkPort));
  try {
    const proxy = await startProxy('unhitch', {
      frontendPort: await freePort(),
      backendPort: sinkPort,
      combinedPemPath: certificate.combinedPath,
      workDirectory,
    });
    try {
      const rate = 30;
      // Full with node's default offer (the hybrid first), resumed with X25519 only.
      for (const [mode, groups, chosen] of [
        ['full', '', HYBRID_AS_NAMED],
        ['resumed', 'X25519', 'X25519'],
      ] as const) {
        const measured = await runMeasuredChild<{
          handshakesPerSecond: number;
          failures: number;
          missed: number;
          rateOffered: number;
          groups: Record<string, number>;
        }>({
          name: `handshake-client ${mode}`,
          command: process.execPath,
          args: [
            join(REPO_ROOT, 'dist', 'bench', 'lib', 'handshake-client.js'),
            `--port=${proxy.port}`,
            `--mode=${mode}`,
            '--workers=1',
            '--concurrency=8',
            `--rate=${rate}`,
            `--groups=${groups}`,
            '--warmup=0.3',
            '--duration=1.5',
          ],
          proxyPid: proxy.process?.pid ?? null,
        });
        const r = measured.result;
        assert.equal(r.rateOffered, rate);
        // Closed loop with 8 in flight runs hundreds per second; open loop keeps to the rate.
        assert.ok(r.handshakesPerSecond <= rate * 1.25, `${mode}: ${JSON.stringify(r)}`);
        assert.ok(r.handshakesPerSecond >= rate * 0.4, `${mode}: ${JSON.stringify(r)}`);
        // Resumed: a handshake that did not resume is a failure, so this also checks tickets.
        assert.equal(r.failures, 0, `${mode}: ${JSON.stringify(r)}`);
        assert.deepEqual(Object.keys(r.groups), [chosen], `${mode}: ${JSON.stringify(r)}`);
        assert.ok(measured.proxyCpuMicros !== null && measured.proxyCpuMicros > 0);
      }
    } finally {
      await proxy.process?.stop();
    }
  } finally {
    await sink.stop();
  }
});

test('seed: one row per proxy with the ramp and every error column, all connections open', {
  skip: existsSync(UNHITCH_CLI) ? false : `${UNHITCH_CLI} not built`,
  timeout: 60_000,
}, async () => {
  const lines = await benchScriptLines('seed.js', [
    '--quick',
    '--proxies=unhitch',
    '--connections=30',
    '--workers=1',
    '--duration=1',
    '--warmup=0.3',
    '--no-write',
  ]);
  const row = lines.find((line) => line.startsWith('| bittorrent-tracker | unhitch'));
  assert.ok(row, lines.join('\n'));
  const cells = row.split('|').map((cell) => cell.trim());
  // Backend, proxy, workers, open / target, ramp/s, responses/s, µs, lost before, lost in, failure replies, backend-error lines
  assert.equal(cells[4], '30 / 30');
  assert.ok(Number(cells[5]?.replaceAll(',', '')) > 0, row);
  assert.ok(Number(cells[6]?.replaceAll(',', '')) > 0, row);
  assert.deepEqual(cells.slice(8, 12), ['0', '0', '0', '0'], row);
});

test('equal-load: a saturation row, then the proxy at the offered share of it; X25519 for every proxy, the hybrid at the same rate', {
  skip: existsSync(UNHITCH_CLI) ? false : `${UNHITCH_CLI} not built`,
  timeout: 60_000,
}, async () => {
  const lines = await benchScriptLines('equal-load.js', [
    '--quick',
    '--proxies=unhitch',
    '--kinds=full,full-hybrid',
    '--loads=50',
    '--duration=1',
    '--warmup=0.3',
    '--concurrency=8',
    '--workers=1',
    '--no-write',
  ]);
  const saturation = lines
    .find((line) => /^\| full +\| saturation \(own max\) +\| unhitch/.test(line))
    ?.split('|')
    .map((cell) => cell.trim());
  const half = lines.find((line) => /^\| full +\| 50 % = [\d,]+\/s +\| unhitch/.test(line));
  assert.ok(saturation && half, lines.join('\n'));
  const max = Number(saturation[4]?.replaceAll(',', ''));
  const offered = Number(/50 % = ([\d,]+)\/s/.exec(half)?.[1]?.replaceAll(',', ''));
  assert.ok(max > 0, saturation.join('|'));
  // The offered rate is half of the (only, so slowest) proxy's maximum.
  assert.ok(Math.abs(offered - max / 2) <= 1, `${offered} offered for a maximum of ${max}`);
  // The last column names the key exchange the proxy chose.
  assert.equal(saturation.at(-2), 'X25519', saturation.join('|'));
  const hybrid = lines
    .find((line) => /^\| full-hybrid +\| 50 % = [\d,]+\/s +\| unhitch/.test(line))
    ?.split('|')
    .map((cell) => cell.trim());
  assert.ok(hybrid, lines.join('\n'));
  assert.equal(hybrid.at(-2), HYBRID_AS_NAMED, hybrid.join('|'));
  // Offered the full handshakes' rate: the surcharge line compares at the same load.
  assert.equal(hybrid[2], half.split('|')[2]?.trim(), hybrid.join('|'));
  // The surcharge is a ratio: written only when no run was UNRELIABLE (a loaded machine).
  const unreliable = lines.some((line) => line.includes('UNRELIABLE'));
  assert.equal(
    lines.some((line) =>
      line.startsWith(
        `unhitch full handshake, ${HYBRID_AS_NAMED} chosen (X25519MLKEM768:X25519 offered)`,
      ),
    ),
    !unreliable,
    lines.join('\n'),
  );
});

test('reconnect-storm --quick: every client back through unhitch and bare node:tls, the resumed storm all resumed', {
  skip: existsSync(UNHITCH_CLI) ? false : `${UNHITCH_CLI} not built`,
  timeout: 60_000,
}, async () => {
  const lines = await benchScriptLines('reconnect-storm.js', [
    '--quick',
    '--proxies=unhitch,node-tls-bare',
    // A client not back in 10 s is an error: a quick storm of 200 takes about a second.
    '--timeout=10',
    '--no-write',
  ]);
  const output = lines.join('\n');
  // It says what N_max came to and why.
  assert.match(output, /^N_max = [\d,]+: the proxy's open-files limit is [\d,]+/m, output);
  for (const mode of ['full', 'resumed']) {
    for (const proxy of ['unhitch', 'node-tls-bare']) {
      const cells = lines
        .find((line) => new RegExp(`^\\| 200 +\\| ${mode} +\\| ${proxy} +\\|`).test(line))
        ?.split('|')
        .map((cell) => cell.trim());
      assert.ok(cells, `no ${mode} row for ${proxy}:\n${output}`);
      // Connections, reconnect, proxy, µs/reconnect, min–max, wall, min–max, resumed, back / N, errors
      assert.ok(Number(cells[4]) > 0, cells.join('|'));
      assert.equal(cells[8], mode === 'resumed' ? '100.0 %' : '0.0 %', cells.join('|'));
      assert.equal(cells[9], '200 / 200', cells.join('|'));
      assert.equal(cells[10], '0', cells.join('|'));
    }
  }
});

test('abuse: unhitch with the recommended limits beside a plaintext flood and a slowloris after the handshake, every column filled', {
  skip: existsSync(UNHITCH_CLI) ? false : `${UNHITCH_CLI} not built`,
  timeout: 90_000,
}, async () => {
  const lines = await benchScriptLines('abuse.js', [
    '--quick',
    '--proxies=unhitch-limits',
    '--attacks=baseline,plaintext,slowloris-post',
    '--duration=1.5',
    '--warmup=0.3',
    '--no-write',
  ]);
  const rows = new Map(
    lines
      .filter((line) => /^\| [a-z].* \| unhitch-limits /.test(line))
      .map((line) => {
        const cells = line.split('|').map((cell) => cell.trim());
        return [cells[1], cells] as const;
      }),
  );
  assert.deepEqual(
    [...rows.keys()],
    ['no attack (baseline)', 'plaintext flood', 'slowloris after the handshake'],
    lines.join('\n'),
  );
  for (const [attack, cells] of rows) {
    // Sessions, success %, p50, p99 and RSS measured; the verdict is PASS, FAIL or –.
    assert.ok(Number(cells[3]) > 0, `${attack}: ${cells.join('|')}`);
    assert.match(cells[4] ?? '', /^\d+\.\d/, `${attack}: ${cells.join('|')}`);
    assert.match(cells[6] ?? '', /^\d+\.\d$/, `${attack}: ${cells.join('|')}`);
    assert.ok(Number(cells[8]) > 0, `${attack}: ${cells.join('|')}`);
    assert.match(cells.at(-2) ?? '', /^(PASS|FAIL|–)$/, `${attack}: ${cells.join('|')}`);
  }
  // The attacker connected in the attack rows and the proxy ended some of its connections.
  const attackerCells = (attack: string): number[] =>
    (rows.get(attack)?.[11] ?? '').split('/').map((n) => Number(n.trim().replaceAll(',', '')));
  const [connects, , endedByProxy] = attackerCells('plaintext flood');
  assert.ok((connects ?? 0) > 0 && (endedByProxy ?? 0) > 0, rows.get('plaintext flood')?.join('|'));
  assert.ok((attackerCells('slowloris after the handshake')[0] ?? 0) > 0);
});
