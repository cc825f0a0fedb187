/**
 * The text unhitch writes for other programs: the dbg-listen lines a script reads and the
 * syslog lines logger(1) forwards.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generationAddresses, listenLines } from '../../src/cluster/dbg-listen.js';
import { syslogLine, syslogSeverity } from '../../src/ops/syslog.js';

test('dbg-listen: AF_INET listeners only, in frontend order, as Hitch listen_endpoint_print writes them; a dual-stack wildcard as 0.0.0.0', () => {
  assert.deepEqual(
    listenLines([
      { kind: 'tcp', host: '::1', port: 8442 },
      { kind: 'tcp', host: '127.0.0.1', port: 8443 },
      { kind: 'tcp', host: '::ffff:7f00:1', port: 8445 },
      { kind: 'tcp', host: '::', port: 443 },
      { kind: 'tcp', host: undefined, port: 80 },
      { kind: 'tcp', host: '127.0.0.1', port: 8443 },
    ]),
    ['127.0.0.1:8443', '0.0.0.0:443', '0.0.0.0:80'],
  );
});

test('dbg-listen: workers in slot order, a socket shared by every worker listed once', () => {
  const shared = { kind: 'tcp', host: '127.0.0.1', port: 8443 } as const;
  const addresses = generationAddresses(
    new Map([
      [1, [shared, { kind: 'tcp', host: '127.0.0.1', port: 40002 } as const]],
      [0, [shared, { kind: 'tcp', host: '127.0.0.1', port: 40001 } as const]],
    ]),
  );
  assert.deepEqual(listenLines(addresses), [
    '127.0.0.1:8443',
    '127.0.0.1:40001',
    '127.0.0.1:40002',
  ]);
});

test('syslog: pino levels map to RFC 5424 severities', () => {
  assert.deepEqual([60, 50, 40, 30, 20, 10].map(syslogSeverity), [2, 3, 4, 6, 7, 7]);
});

test('syslog: one line per record, message then the other fields, no newline inside', () => {
  const line = JSON.stringify({
    level: 50,
    time: 1,
    pid: 42,
    hostname: 'h',
    role: 'worker',
    msg: 'worker could not start\nsecond line',
  });
  assert.equal(syslogLine(line), '<3>worker could not start second line {"role":"worker"}');
  assert.equal(syslogLine(JSON.stringify({ level: 30, msg: 'plain' })), '<6>plain');
  assert.equal(syslogLine('not json'), undefined);
});
