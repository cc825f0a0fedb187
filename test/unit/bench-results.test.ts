/**
 * Benches leave the tree alone (issue 23): where a run's results go, how a run on a loaded
 * machine is marked and kept from writing a ratio, and that a runtime download is announced
 * before it starts.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { dirname } from 'node:path';
import { test } from 'node:test';
import { OtherLoadWindow, parseCpuList } from '../../bench/lib/cpu-set.js';
import { measureWindow, resultsDestination } from '../../bench/lib/harness.js';
import { REPO_ROOT } from '../../bench/lib/proxies.js';
import { Reliability, UNRELIABLE_OTHER_LOAD_PERCENT } from '../../bench/lib/reliability.js';
import { UWS_RUNTIME_NOTICE, uwsRuntime } from '../../bench/lib/runtimes.js';
import { clockTicksPerSecond } from '../kit/proc.js';

const flags = (...names: string[]): Map<string, string> =>
  new Map(
    names.map((name) => {
      const [key = name, value = 'true'] = name.split('=');
      return [key, value];
    }),
  );

test('by default a bench writes into bench/out/, which git ignores; --update-results into bench/', () => {
  const root = '/repo';
  assert.deepEqual(resultsDestination(flags(), root), {
    resultsMd: '/repo/bench/out/RESULTS.md',
    filesDirectory: '/repo/bench/out/results',
    tracked: false,
  });
  assert.deepEqual(resultsDestination(flags('out=/tmp/x'), root), {
    resultsMd: '/tmp/x/RESULTS.md',
    filesDirectory: '/tmp/x/results',
    tracked: false,
  });
  assert.deepEqual(resultsDestination(flags('update-results'), root), {
    resultsMd: '/repo/bench/RESULTS.md',
    filesDirectory: '/repo/bench/results',
    tracked: true,
  });
  assert.equal(resultsDestination(flags('no-write'), root), null);
  assert.throws(() => resultsDestination(flags('no-write', 'update-results'), root), {
    message: '--no-write and --update-results exclude each other',
  });
  // What the default writes is ignored by git, so `git status` stays clean after a bench.
  for (const path of ['bench/out/RESULTS.md', 'bench/out/results/compare.svg']) {
    execFileSync('git', ['check-ignore', '--quiet', '--no-index', path], { cwd: REPO_ROOT });
  }
});

test('a run with more than 10 % other load on the proxy CPU is marked, summarised, and writes no ratio', () => {
  const quiet = new Reliability();
  assert.equal(quiet.otherLoadCell('unhitch', 3.2), '3');
  assert.equal(quiet.otherLoadCell('hitch', UNRELIABLE_OTHER_LOAD_PERCENT), '10');
  assert.equal(quiet.otherLoadCell('none', null), '–');
  assert.equal(quiet.unreliable, false);
  assert.deepEqual(quiet.ratioLines(['ratio unhitch/hitch cpu-per-response: 1.02']), [
    'ratio unhitch/hitch cpu-per-response: 1.02',
  ]);
  assert.equal(quiet.summary(), null);

  const loaded = new Reliability();
  assert.equal(loaded.otherLoadCell('unhitch full', 4), '4');
  assert.equal(loaded.otherLoadCell('hitch full', 37.4), '37 UNRELIABLE');
  assert.equal(loaded.otherLoadCell('hitch full', 12), '12 UNRELIABLE');
  assert.equal(loaded.unreliable, true);
  assert.deepEqual(loaded.ratioLines(['ratio unhitch/hitch cpu-per-full-handshake: 0.91']), []);
  assert.equal(
    loaded.summary(),
    'UNRELIABLE: other processes took more than 10 % of the proxy CPU in hitch full (37 %); those rows are marked and no ratio line is written. Rerun on a quiet machine.',
  );
});

test('the uws backend says it may download Node 20 before provision-node runs', () => {
  const events: string[] = [];
  uwsRuntime(
    (line) => events.push(`announce: ${line}`),
    () => {
      events.push('provision');
      return dirname(process.execPath);
    },
  );
  assert.deepEqual(events, [`announce: ${UWS_RUNTIME_NOTICE}`, 'provision']);
  assert.match(UWS_RUNTIME_NOTICE, /downloads Node 20 from the npm registry/);
});

test('reliableRows: a ratio made of undisturbed rows stands when another row of the run was disturbed', () => {
  const reliability = new Reliability();
  reliability.otherLoadCell('unhitch 9,488 resumed', 3);
  reliability.otherLoadCell('hitch 9,488 resumed', 2);
  reliability.otherLoadCell('unhitch 4,096 resumed', 11);
  assert.equal(reliability.reliableRows('unhitch 9,488 resumed', 'hitch 9,488 resumed'), true);
  assert.equal(reliability.reliableRows('unhitch 4,096 resumed', 'hitch 9,488 resumed'), false);
  assert.deepEqual(reliability.ratioLines(['ratio x: 1.00']), []);
  reliability.ratiosFromReliableRows = true;
  assert.match(
    reliability.summary() ?? '',
    /a ratio line is written only from rows that are not\./,
  );
});

test('--proxy-cpu naming several CPUs: other load is measured over the whole set, by the same 10 % rule', async () => {
  assert.deepEqual(parseCpuList('1'), [1]);
  assert.deepEqual(parseCpuList('0,1'), [0, 1]);
  assert.deepEqual(parseCpuList('2-4,0'), [0, 2, 3, 4]);
  assert.deepEqual(parseCpuList('0-6:3'), [0, 3, 6]);
  for (const notAList of ['', '1,x', '3-1', '0-2:0', 'all'])
    assert.equal(parseCpuList(notAList), null);

  // CPUs 1 and 2 for one second: CPU 1 busy all of it, CPU 2 for 0.3 s; CPU 0 (not in the
  // set) busy too, which must not count.
  const ticks = clockTicksPerSecond();
  const procStat = (cpu0: number, cpu1: number, cpu2: number): string =>
    [
      'cpu  0 0 0 0 0 0 0 0 0 0',
      `cpu0 ${cpu0 * ticks} 0 0 0 0 0 0 0 0 0`,
      `cpu1 ${cpu1 * ticks} 0 0 ${ticks} 0 0 0 0 0 0`,
      `cpu2 0 0 ${cpu2 * ticks} ${ticks} 0 0 0 0 0 0`,
    ].join('\n');
  const window = (proxySeconds: number): number | null => {
    const texts = [procStat(10, 10, 10), procStat(11, 11, 10.3)];
    const clock = [5_000, 6_000];
    const measured = new OtherLoadWindow(parseCpuList('1,2'), {
      readProcStat: () => texts.shift() ?? '',
      nowMs: () => clock.shift() ?? 0,
    });
    measured.start();
    measured.end();
    return measured.percent(proxySeconds * 1_000_000);
  };
  // 1.3 s busy of a 2 s capacity, 1.1 s of it the proxy's: 10 %, reliable.
  assert.ok(Math.abs((window(1.1) ?? Number.NaN) - 10) < 1e-9, String(window(1.1)));
  // 1.0 s the proxy's: 15 % of the set, unreliable (on one CPU it would read 30 %).
  const reliability = new Reliability();
  assert.equal(reliability.otherLoadCell('unhitch', window(1.1)), '10');
  assert.equal(reliability.otherLoadCell('hitch', window(1.0)), '15 UNRELIABLE');
  assert.equal(reliability.reliableRows('unhitch'), true);
  assert.equal(reliability.reliableRows('hitch'), false);

  // The real /proc/stat: a window over this machine's CPUs 0 and 1 gives a figure, not '–'.
  const measured = await measureWindow(null, parseCpuList('0,1'), async () => {
    const until = performance.now() + 50;
    while (performance.now() < until);
  });
  assert.equal(typeof measured.otherLoadOnProxyCpuPercent, 'number');
  assert.notEqual(
    new Reliability().otherLoadCell('unhitch', measured.otherLoadOnProxyCpuPercent),
    '–',
  );
});
