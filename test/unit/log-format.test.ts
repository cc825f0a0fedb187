/** Readable log lines for a terminal (src/ops/log-format.ts) and the per-frontend summary. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseHitchConfigText } from '../../src/config/load.js';
import { frontendSummaries } from '../../src/ops/frontend-summary.js';
import { addressText, prettyLine, resolveLogFormat } from '../../src/ops/log-format.js';
import type { CertificateMaterial } from '../../src/tls/material.js';

const AT = new Date(2026, 11, 5, 17, 4, 9, 172).getTime();

test('a primary line: time, level, process, message, then its fields as key=value', () => {
  const line = JSON.stringify({
    level: 30,
    time: AT,
    pid: 486,
    role: 'primary',
    workers: 2,
    cpus: [0, 1],
    source: '<command line>',
    msg: 'starting',
  });
  assert.equal(
    prettyLine(`${line}\n`),
    '17:04:09.172 INFO  primary  starting workers=2 cpus=[0,1] source="<command line>"\n',
  );
});

test('a worker line names the worker (and a later generation); addresses read as host:port', () => {
  const line = (generation: number) =>
    prettyLine(
      JSON.stringify({
        level: 40,
        time: AT,
        pid: 581,
        role: 'worker',
        worker: 1,
        generation,
        addresses: [
          { kind: 'tcp', host: '127.0.0.1', port: 4700 },
          { kind: 'tcp', host: '::1', port: 4700 },
        ],
        msg: 'worker listening',
      }),
    );
  assert.equal(
    line(1),
    '17:04:09.172 WARN  worker 1 worker listening addresses=127.0.0.1:4700,[::1]:4700\n',
  );
  assert.match(line(3), / worker 1 g3 worker listening /);
});

test('an error shows its message and code, quoted; a line that is not JSON passes through', () => {
  const line = prettyLine(
    JSON.stringify({
      level: 50,
      time: AT,
      role: 'primary',
      code: 'UNHITCH_RELOAD_REJECTED',
      err: { type: 'Error', message: 'no such file', code: 'ENOENT', stack: 'Error: …' },
      msg: 'reload rejected; the running configuration stays',
    }),
  );
  assert.equal(
    line,
    '17:04:09.172 ERROR primary  reload rejected; the running configuration stays code=UNHITCH_RELOAD_REJECTED err="no such file (ENOENT)"\n',
  );
  assert.equal(prettyLine('not json'), 'not json\n');
});

test('auto is readable on a terminal and JSON elsewhere; json and pretty are what they say', () => {
  assert.equal(resolveLogFormat('auto', true), 'pretty');
  assert.equal(resolveLogFormat('auto', false), 'json');
  assert.equal(resolveLogFormat('json', true), 'json');
  assert.equal(resolveLogFormat('pretty', false), 'pretty');
  assert.equal(addressText({ host: undefined, port: 443 }), '[*]:443');
});

test('log-format is an option like any other: hitch.conf, a bad value named', () => {
  const parse = (line: string) => parseHitchConfigText(`pem-file = "x.pem"\n${line}`, 'x.conf');
  assert.equal(parse('log-format = pretty').config.logFormat, 'pretty');
  assert.equal(parse('').config.logFormat, 'auto');
  assert.throws(
    () => parse('log-format = yaml'),
    /x\.conf:2:14: invalid log format "yaml" \(expected auto, json, pretty\)/,
  );
});

test('one summary per frontend: bound address, its certificates, TLS versions, groups', () => {
  const { config } = parseHitchConfigText(
    [
      'frontend = "[127.0.0.1]:0"',
      'frontend = { host = "::1" port = "8443" pem-file = "own.pem" tls-protos = TLSv1.3 }',
      'pem-file = "global.pem"',
      'ecdh-curve = "X25519:P-256"',
    ].join('\n'),
    'x.conf',
  );
  const material = (names: string[], frontendIndex: number | undefined) =>
    ({ names, source: 'x.pem', frontendIndex }) as unknown as CertificateMaterial;
  const summaries = frontendSummaries(
    config,
    [material(['tracker.example.com', 'www.example.com'], undefined), material(['own.example'], 1)],
    [
      { kind: 'tcp', host: '127.0.0.1', port: 40123 },
      { kind: 'tcp', host: '::1', port: 8443 },
    ],
  );
  assert.deepEqual(summaries, [
    {
      frontend: '127.0.0.1:40123',
      certificates: ['tracker.example.com (+1 names)'],
      tls: ['TLSv1.2', 'TLSv1.3'],
      groups: 'X25519:P-256',
    },
    {
      frontend: '[::1]:8443',
      certificates: ['own.example'],
      tls: ['TLSv1.3'],
      groups: 'X25519:P-256',
    },
  ]);
});
