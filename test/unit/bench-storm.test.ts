/** bench/reconnect-storm's plan: sizes (N_max from the open-files limit), proxy order, bottleneck. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { maxProxiedConnections } from '../../bench/lib/open-files.js';
import { bottleneck, rotated, stormSizes } from '../../bench/lib/storm-plan.js';

test('N_max: the open-files limit less the spare, two descriptors per proxied connection', () => {
  assert.equal(maxProxiedConnections(20_000, 1024), 9488);
  assert.equal(maxProxiedConnections(20_001, 1024), 9488);
  assert.equal(maxProxiedConnections(1000, 1024), 1);
});

test('storm sizes: max is N_max, larger counts are capped to it, duplicates dropped, ascending', () => {
  assert.deepEqual(stormSizes(['1020', '4096', 'max'], 9488), [1020, 4096, 9488]);
  assert.deepEqual(stormSizes(['max', '4096', '1020'], 3000), [1020, 3000]);
  assert.throws(() => stormSizes(['many'], 100), /not a count or max/);
  assert.throws(() => stormSizes(['0'], 100), /not a count or max/);
});

test('each round starts with the next proxy, every proxy once per round', () => {
  const proxies = ['unhitch', 'hitch', 'haproxy', 'node-tls', 'node-tls-bare'];
  const firsts = [0, 1, 2, 3, 4].map((round) => rotated(proxies, round)[0]);
  assert.deepEqual(firsts, proxies);
  for (let round = 0; round < 7; round++) {
    assert.deepEqual([...rotated(proxies, round)].sort(), [...proxies].sort());
  }
  assert.deepEqual(rotated(proxies, 5), proxies);
  assert.deepEqual(rotated([], 3), []);
});

test('bottleneck: the proxy when its CPU was busy, else the client side when the load CPU was', () => {
  assert.equal(bottleneck(97, 99), 'proxy');
  assert.equal(bottleneck(40, 99), 'client side');
  assert.equal(bottleneck(40, 50), 'neither (waits)');
  assert.equal(bottleneck(null, null), 'neither (waits)');
});
