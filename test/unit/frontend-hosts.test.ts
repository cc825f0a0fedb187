import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseHitchConfigText } from '../../src/config/load.js';
import { expandFrontendHosts, type LookupAll } from '../../src/net/frontend-hosts.js';

const configOf = (text: string) => parseHitchConfigText(text, 'hitch.conf').config;

const table: Record<string, readonly string[]> = {
  'dual.example': ['192.0.2.1', '2001:db8::1', '192.0.2.1'],
  'one.example': ['192.0.2.7'],
};
const fakeLookup: LookupAll = async (name) => {
  const found = table[name];
  if (found === undefined) throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
  return found;
};

test('a named frontend becomes one frontend per address, in resolver order, duplicates dropped (Hitch frontend_listen)', async () => {
  const config = configOf(
    'frontend = "[dual.example]:443"\nfrontend = "[127.0.0.1]:444"\nfrontend = "[one.example]:445"\nfrontend = "[*]:446"\nbackend = "[127.0.0.1]:8000"\npem-file = "/x.pem"\n',
  );
  const expanded = await expandFrontendHosts(config, () => new Error('unexpected'), fakeLookup);
  assert.deepEqual(
    expanded.frontends.map((frontend) => `${frontend.address.host}|${frontend.address.port}`),
    ['192.0.2.1|443', '2001:db8::1|443', '127.0.0.1|444', '192.0.2.7|445', 'undefined|446'],
  );
  // Everything else a frontend says is kept by each copy.
  assert.equal(expanded.frontends[1]?.matchGlobalCerts, config.frontends[0]?.matchGlobalCerts);
});

test('numeric and wildcard frontends are left as they are (the same object)', async () => {
  const config = configOf(
    'frontend = "[::1]:443"\nfrontend = "[*]:444"\nbackend = "[127.0.0.1]:8000"\npem-file = "/x.pem"\n',
  );
  const expanded = await expandFrontendHosts(
    config,
    () => new Error('unexpected'),
    async () => {
      throw new Error('no lookup expected');
    },
  );
  assert.equal(expanded, config);
});

test('a name that does not resolve is reported through onUnresolved with the lookup error', async () => {
  const config = configOf(
    'frontend = "[nowhere.example]:443"\nbackend = "[127.0.0.1]:8000"\npem-file = "/x.pem"\n',
  );
  await assert.rejects(
    expandFrontendHosts(config, (name, error) => new Error(`${name}: ${error.code}`), fakeLookup),
    /nowhere\.example: ENOTFOUND/,
  );
});
