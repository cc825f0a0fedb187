/**
 * The provenance map (src/config/options/provenance.ts) and the option table stay in
 * step: every option has a Hitch version, no entry names an option that does not exist,
 * and 'unhitch' is exactly the table's extensions.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  PROVENANCE,
  SCOPE_PROVENANCE,
  VALUE_PROVENANCE,
} from '../../src/config/options/provenance.js';
import { OPTIONS, OPTIONS_BY_NAME } from '../../src/config/options/table.js';

test('provenance: every option of the table has an entry, and every entry names an option', () => {
  const names = OPTIONS.map((spec) => spec.name);
  assert.deepEqual(
    names.filter((name) => PROVENANCE[name] === undefined),
    [],
    'options without a provenance',
  );
  assert.deepEqual(
    Object.keys(PROVENANCE).filter((name) => !OPTIONS_BY_NAME.has(name)),
    [],
    'provenance entries for missing options',
  );
  for (const { option, scope } of SCOPE_PROVENANCE)
    assert.ok(OPTIONS_BY_NAME.get(option)?.scopes.includes(scope), `${option} in ${scope}`);
  for (const { option } of VALUE_PROVENANCE) assert.ok(OPTIONS_BY_NAME.has(option), option);
});

test("provenance: 'unhitch' exactly for the table's extensions; Hitch 1.8's timeouts are Hitch's", () => {
  for (const spec of OPTIONS)
    assert.equal(PROVENANCE[spec.name] === 'unhitch', spec.extension, spec.name);
  assert.equal(PROVENANCE['backend-connect-timeout'], '1.8');
  assert.equal(PROVENANCE['ssl-handshake-timeout'], '1.8');
  assert.equal(OPTIONS_BY_NAME.get('backend-connect-timeout')?.cli?.hitch, true);
  assert.equal(OPTIONS_BY_NAME.get('ssl-handshake-timeout')?.cli?.hitch, true);
});
