import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  ipBytes,
  ipFromBytes,
  ipText,
  isLoopback,
  parseIp,
  peerAddress,
} from '../../src/net/ip.js';
import { encodeProxyV1, encodeProxyV2 } from '../../src/proxy/proxy-protocol.js';
import { encodeWriteIp } from '../../src/proxy/write-ip.js';

function hex(groups: string): Buffer {
  return Buffer.from(groups.replace(/\s+/g, ''), 'hex');
}

function bytesOf(text: string): Buffer {
  const parsed = parseIp(text);
  assert.ok(parsed, text);
  return ipBytes(parsed);
}

test('write-ip: the octets Hitch writes (family, then sin_addr / sin6_addr)', () => {
  // AF_INET = 2 (an IPv4 client, also when node reports it IPv4-mapped), AF_INET6 = 10.
  assert.deepEqual(encodeWriteIp('192.0.2.7'), hex('02 c0000207'));
  assert.deepEqual(encodeWriteIp('::ffff:192.0.2.7'), hex('02 c0000207'));
  assert.deepEqual(encodeWriteIp('::FFFF:192.0.2.7'), hex('02 c0000207'));
  assert.deepEqual(encodeWriteIp('::1'), hex('0a 00000000 00000000 00000000 00000001'));
  assert.deepEqual(encodeWriteIp('2001:db8::5'), hex('0a 20010db8 00000000 00000000 00000005'));
  // IPv4-compatible and other embedded-IPv4 forms are IPv6 addresses, written as such.
  assert.deepEqual(encodeWriteIp('::1.2.3.4'), hex('0a 00000000 00000000 00000000 01020304'));
  assert.deepEqual(
    encodeWriteIp('64:ff9b::1.2.3.4'),
    hex('0a 0064ff9b 00000000 00000000 01020304'),
  );
  assert.deepEqual(encodeWriteIp('fe80::1%eth0'), hex('0a fe800000 00000000 00000000 00000001'));
  for (const bad of ['', 'localhost', '1.2.3', '127.1', '01.2.3.4', '1:2:3:4:5:6:7:8:9']) {
    assert.throws(() => encodeWriteIp(bad), { code: 'UNHITCH_WRITE_IP' }, bad);
  }
});

test('PROXY v1/v2 carry IPv4-compatible IPv6 addresses as IPv6, like inet_ntop', () => {
  const endpoints = {
    sourceAddress: '::1.2.3.4',
    sourcePort: 1234,
    destinationAddress: '::1',
    destinationPort: 443,
  };
  assert.equal(
    encodeProxyV1(endpoints).toString('latin1'),
    'PROXY TCP6 ::1.2.3.4 ::1 1234 443\r\n',
  );
  const v2 = encodeProxyV2(endpoints);
  assert.deepEqual(v2.subarray(16, 32), hex('00000000 00000000 00000000 01020304'));
});

test('peerAddress unmaps IPv4-mapped addresses only', () => {
  assert.equal(ipText(peerAddress('::ffff:10.1.2.3') ?? assert.fail()), '10.1.2.3');
  assert.equal(ipText(peerAddress('::1.2.3.4') ?? assert.fail()), '::1.2.3.4');
  assert.equal(ipText(peerAddress('2001:DB8:0:0:0:0:0:5') ?? assert.fail()), '2001:db8::5');
  assert.equal(peerAddress('not an address'), undefined);
});

test('ipText: RFC 5952, with the dotted tail inet_ntop writes for mapped/compatible', () => {
  const cases: Array<[string, string]> = [
    ['0:0:0:0:0:ffff:c000:207', '::ffff:192.0.2.7'],
    ['0:0:0:0:0:0:102:304', '::1.2.3.4'],
    ['::', '::'],
    ['::1', '::1'],
    ['::2', '::2'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['64:ff9b::102:304', '64:ff9b::102:304'],
  ];
  for (const [input, expected] of cases) {
    assert.equal(ipText(parseIp(input) ?? assert.fail(input)), expected, input);
  }
});

test('isLoopback: 127/8, ::1 and mapped 127/8', () => {
  for (const text of ['127.0.0.1', '127.9.8.7', '::1', '::ffff:127.0.0.1']) {
    assert.equal(isLoopback(parseIp(text) ?? assert.fail(text)), true, text);
  }
  for (const text of ['128.0.0.1', '::', '::2', '::ffff:10.0.0.1', '10.0.0.1']) {
    assert.equal(isLoopback(parseIp(text) ?? assert.fail(text)), false, text);
  }
});

test('IPv6 text ⇄ bytes agrees with the WHATWG URL serializer', () => {
  fc.assert(
    fc.property(fc.ipV6(), (address) => {
      const bytes = bytesOf(address);
      const canonical = new URL(`http://[${address}]/`).hostname.slice(1, -1);
      assert.deepEqual(bytesOf(canonical), bytes);
      const text = ipText(ipFromBytes(bytes));
      assert.deepEqual(bytesOf(text), bytes);
      if (!text.includes('.')) assert.equal(text, canonical);
    }),
    { numRuns: 500 },
  );
});
