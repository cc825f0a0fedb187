import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '../../src/config/errors.js';
import { parseHitchConfigText } from '../../src/config/load.js';
import { loadCertificates } from '../../src/tls/material.js';
import { issue, makeCa } from '../kit/pki.js';

const parse = (text: string) => parseHitchConfigText(text, 'test.conf').config;

test('client-verify and client-verify-ca: global, frontend and pem-file scopes (Hitch 1.8)', () => {
  const config = parse(`
client-verify = optional
client-verify-ca = "global-ca.pem"
pem-file = {
  cert = "site1.pem"
  client-verify = required
  client-verify-ca = "site1-ca.pem"
}
pem-file = "default.pem"
frontend = {
  host = "*"
  port = "8443"
  client-verify = none
  pem-file = "own.pem"
}
proxy-authority = off
proxy-tlv = off
proxy-client-cert = on
`);
  assert.equal(config.tls.clientVerify, 'optional');
  assert.equal(config.tls.clientVerifyCa, 'global-ca.pem');
  assert.deepEqual(config.pemFiles[0], {
    certPath: 'site1.pem',
    privateKeyPath: undefined,
    ocspResponsePath: undefined,
    clientVerify: 'required',
    clientVerifyCa: 'site1-ca.pem',
  });
  assert.equal(config.pemFiles[1]?.clientVerify, undefined, 'inherits');
  assert.equal(config.frontends[0]?.clientVerify, 'none');
  assert.equal(config.frontends[0]?.clientVerifyCa, 'global-ca.pem', 'inherited from global');
  assert.equal(config.proxyAuthority, false);
  assert.equal(config.proxyTlv, false);
  assert.equal(config.proxyClientCert, true);
  const defaults = parse('pem-file = "c.pem"\n');
  assert.equal(defaults.tls.clientVerify, 'none');
  assert.equal(defaults.proxyAuthority, true);
  assert.equal(defaults.proxyTlv, true);
  assert.equal(defaults.proxyClientCert, false);
});

test('client-verify refuses other words, with the position', () => {
  assert.throws(
    () => parse('pem-file = "c.pem"\nclient-verify = maybe\n'),
    (err: unknown) =>
      err instanceof ConfigError &&
      err.code === 'UNHITCH_CONFIG_INVALID_VALUE' &&
      /test\.conf:2:17: .*maybe/.test(err.message),
  );
});

test('optional/required without client-verify-ca, or an unreadable CA, fail when certificates load', () => {
  const ca = makeCa('config-ca');
  const site = issue(ca, 'config-site', { dnsNames: ['site.example.com'] });
  assert.throws(
    () => loadCertificates(parse(`pem-file = "${site.combinedPath}"\nclient-verify = required\n`)),
    (err: unknown) =>
      err instanceof ConfigError &&
      err.code === 'UNHITCH_CONFIG_MISSING' &&
      /client-verify = required needs client-verify-ca/.test(err.message),
  );
  assert.throws(
    () =>
      loadCertificates(
        parse(
          `pem-file = "${site.combinedPath}"\nclient-verify = optional\nclient-verify-ca = "/nonexistent/ca.pem"\n`,
        ),
      ),
    (err: unknown) =>
      err instanceof ConfigError && /\/nonexistent\/ca\.pem: cannot read/.test(err.message),
  );
  assert.throws(
    () =>
      loadCertificates(
        parse(
          `pem-file = "${site.combinedPath}"\nclient-verify = optional\nclient-verify-ca = "${site.keyPath}"\n`,
        ),
      ),
    (err: unknown) => err instanceof ConfigError && /holds no PEM certificate/.test(err.message),
  );
  const [material] = loadCertificates(
    parse(
      `pem-file = "${site.combinedPath}"\nclient-verify = optional\nclient-verify-ca = "${ca.certPath}"\n`,
    ),
  );
  assert.equal(material?.clientVerify, 'optional');
  assert.match(material?.clientVerifyCa?.toString() ?? '', /BEGIN CERTIFICATE/);
});
