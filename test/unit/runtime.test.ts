import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import test from 'node:test';
import { MINIMUM_NODE, runtimeRefusal } from '../../src/runtime.js';

// The suite must run on a supported LTS line (README, .ci/run): a run on the machine's
// end-of-life Node 20 would prove nothing about what ships.
test('the suite runs on a supported Node LTS line with OpenSSL ≥ 3.5', () => {
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  assert.ok(
    major >= 24 || (major === 22 && minor >= 12),
    `Node ${process.versions.node} is not a supported line (24, or 22 ≥ 22.12); run PATH="$(.ci/provision-node 24):$PATH" npm test`,
  );
  // OpenSSL 3.5 is what brings X25519MLKEM768 and the record layer the memory figures describe.
  assert.match(process.versions.openssl, /^3\.([5-9]|\d\d)\./);
});

test("package.json's engines names the same floor", () => {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8'));
  assert.equal(pkg.engines.node, '>=22.12');
});

test('runtimeRefusal: one line for Node < 22.12, nothing from 22.12 on', () => {
  assert.equal(
    runtimeRefusal('v20.20.2'),
    'unhitch needs Node.js >= 22.12 (this is v20.20.2); see README "Quick start"',
  );
  for (const old of ['v22.11.0', 'v18.19.1', 'v8.0.0', 'nonsense'])
    assert.match(runtimeRefusal(old) ?? '', /^unhitch needs Node\.js >= 22\.12 /, old);
  for (const supported of ['v22.12.0', 'v22.23.5', 'v23.0.0', 'v24.22.3', 'v100.0.0'])
    assert.equal(runtimeRefusal(supported), undefined, supported);
  assert.equal(`>=${MINIMUM_NODE.major}.${MINIMUM_NODE.minor}`, '>=22.12');
});
