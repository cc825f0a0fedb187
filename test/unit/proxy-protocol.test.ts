import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  type ClientCertificateStatus,
  encodeProxyV1,
  encodeProxyV2,
  type ProxyEndpoints,
  ProxyHeaderError,
  ProxyHeaderReader,
} from '../../src/proxy/proxy-protocol.js';
import { makeSelfSigned } from '../../src/tls/selfsigned.js';

/** Hex written in readable groups; spaces are ignored. */
function hex(groups: string): Buffer {
  return Buffer.from(groups.replace(/\s+/g, ''), 'hex');
}

const SIG = '0d0a0d0a 000d0a51 5549540a';
const V4: ProxyEndpoints = {
  sourceAddress: '192.168.0.1',
  sourcePort: 56324,
  destinationAddress: '10.0.0.2',
  destinationPort: 443,
};
const V6: ProxyEndpoints = {
  sourceAddress: '2001:db8::1',
  sourcePort: 1234,
  destinationAddress: '::1',
  destinationPort: 443,
};
const FULL_TLVS = {
  alpn: 'http/1.1',
  authority: 'example.com',
  tls: { version: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256' },
};

function assertHeaderError(fn: () => unknown): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof ProxyHeaderError);
    assert.equal(error.code, 'UNHITCH_PROXY_HEADER_INVALID');
    return true;
  });
}

test('v1 IPv4 line', () => {
  assert.equal(
    encodeProxyV1(V4).toString('latin1'),
    'PROXY TCP4 192.168.0.1 10.0.0.2 56324 443\r\n',
  );
});

test('v1 IPv6 line', () => {
  assert.equal(encodeProxyV1(V6).toString('latin1'), 'PROXY TCP6 2001:db8::1 ::1 1234 443\r\n');
});

test('v1 treats ::ffff:a.b.c.d as IPv4 and mixed families as IPv6', () => {
  const mapped = {
    ...V4,
    sourceAddress: '::ffff:127.0.0.1',
    destinationAddress: '::FFFF:127.0.0.2',
  };
  assert.equal(
    encodeProxyV1(mapped).toString('latin1'),
    'PROXY TCP4 127.0.0.1 127.0.0.2 56324 443\r\n',
  );
  const mixed = { ...V6, sourceAddress: '::ffff:1.2.3.4', destinationAddress: '2001:db8::2' };
  assert.equal(
    encodeProxyV1(mixed).toString('latin1'),
    'PROXY TCP6 ::ffff:1.2.3.4 2001:db8::2 1234 443\r\n',
  );
  const mixed2 = { ...V6, sourceAddress: '10.1.2.3' };
  assert.equal(
    encodeProxyV1(mixed2).toString('latin1'),
    'PROXY TCP6 ::ffff:10.1.2.3 ::1 1234 443\r\n',
  );
});

test('v1 UNKNOWN when an address is not IP', () => {
  assert.equal(
    encodeProxyV1({ ...V4, sourceAddress: '/run/sock' }).toString('latin1'),
    'PROXY UNKNOWN\r\n',
  );
  assert.equal(encodeProxyV1({ ...V4, sourcePort: 70000 }).toString('latin1'), 'PROXY UNKNOWN\r\n');
});

test('v2 IPv4 without TLVs, byte by byte', () => {
  const expected = hex(`${SIG} 21 11 000c  c0a80001 0a000002  dc04 01bb`);
  assert.equal(expected.length, 28);
  assert.deepEqual(encodeProxyV2(V4), expected);
  assert.deepEqual(encodeProxyV2(V4, {}), expected);
});

test('v2 IPv6 without TLVs, byte by byte', () => {
  const expected = hex(`${SIG} 21 21 0024
    20010db8 00000000 00000000 00000001
    00000000 00000000 00000000 00000001
    04d2 01bb`);
  assert.equal(expected.length, 52);
  assert.deepEqual(encodeProxyV2(V6), expected);
});

test('v2 IPv4 with ALPN, AUTHORITY and SSL TLVs in Hitch order', () => {
  const expected = hex(`${SIG} 21 11 0050
    c0a80001 0a000002 dc04 01bb
    01 0008 68747470 2f312e31
    02 000b 6578616d 706c652e 636f6d
    20 0028
      01 00000001
      21 0007 544c5376 312e33
      23 0016 544c535f 4145535f 3132385f 47434d5f 53484132 3536`);
  // 16 fixed + 12 addresses + 11 ALPN + 14 AUTHORITY + 43 SSL
  assert.equal(expected.length, 96);
  assert.deepEqual(encodeProxyV2(V4, FULL_TLVS), expected);
});

test('v2 SSL TLV: verify is 1 unless a client certificate was presented and verified', () => {
  const ssl = (status?: ClientCertificateStatus): string => {
    const tls = {
      version: 'TLSv1.3',
      cipher: 'X',
      ...(status ? { clientCertificate: status } : {}),
    };
    // The SSL TLV starts right after the 12 address bytes.
    return encodeProxyV2(V4, { tls }).subarray(28, 36).toString('hex');
  };
  // type 0x20, length 0x0013 (5 fixed + 10 version sub-TLV + 4 cipher sub-TLV), client, verify
  assert.equal(ssl(), '200013' + '01' + '00000001', 'no certificate: client 0x1, verify 1');
  assert.equal(
    ssl({ onConnection: true, inSession: true, verified: true }),
    '200013' + '07' + '00000000',
    "Hitch's test39: a verified certificate gives client 0x7, verify 0",
  );
  assert.equal(
    ssl({ onConnection: false, inSession: true, verified: true }),
    '200013' + '05' + '00000000',
    'resumed session: the certificate is in the session, not on this connection',
  );
  assert.equal(
    ssl({ onConnection: true, inSession: true, verified: false }),
    '200013' + '07' + '00000001',
  );
});

test('v2 client certificate TLV: type 0xE0, before the SSL TLV as Hitch orders them, the PEM as PEM_write_bio_X509_AUX writes it (openssl x509 -trustout), byte for byte', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-trustout-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { certPath } = makeSelfSigned({ dir, stem: 'client' });
  const pem = new X509Certificate(readFileSync(certPath)).toString();
  // PEM_write_bio_X509_AUX of a certificate without trust settings, as Hitch writes it.
  const trusted = execFileSync('openssl', ['x509', '-in', certPath, '-trustout'], {
    encoding: 'latin1',
  });
  assert.match(trusted, /^-----BEGIN TRUSTED CERTIFICATE-----\n/);
  const header = encodeProxyV2(V4, {
    tls: { version: 'TLSv1.3', cipher: 'X' },
    clientCertificatePem: pem,
  });
  assert.equal(header[28], 0xe0);
  assert.equal(header.readUInt16BE(29), trusted.length);
  assert.equal(trusted.length, pem.length + 16, 'TRUSTED twice: 16 bytes more');
  assert.equal(header.subarray(31, 31 + trusted.length).toString('latin1'), trusted);
  assert.equal(header[31 + trusted.length], 0x20, 'then the SSL TLV');
  assert.equal(header.readUInt16BE(14), 12 + 3 + trusted.length + 3 + 0x13);
});

test('v2 IPv6 with ALPN only', () => {
  // 36 address bytes + 3 + 2 ('h2') = 41 = 0x29
  const expected = hex(`${SIG} 21 21 0029
    20010db8 00000000 00000000 00000001
    00000000 00000000 00000000 00000001
    04d2 01bb
    01 0002 6832`);
  assert.deepEqual(encodeProxyV2(V6, { alpn: 'h2' }), expected);
});

test('v2 mixed families use IPv6 with a mapped IPv4 address', () => {
  const mixed = { ...V6, sourceAddress: '::ffff:1.2.3.4' };
  const mapped = { ...V4, sourceAddress: '::ffff:192.168.0.1', destinationAddress: '10.0.0.2' };
  assert.deepEqual(encodeProxyV2(mapped), encodeProxyV2(V4));
  assert.deepEqual(
    encodeProxyV2(mixed),
    hex(`${SIG} 21 21 0024
      00000000 00000000 0000ffff 01020304
      00000000 00000000 00000000 00000001
      04d2 01bb`),
  );
});

test('v2 non-IP endpoints: PROXY with AF_UNSPEC and no address block', () => {
  assert.deepEqual(encodeProxyV2({ ...V4, sourceAddress: 'unix' }), hex(`${SIG} 21 00 0000`));
});

function feedByteByByte(reader: ProxyHeaderReader, data: Buffer) {
  for (let i = 0; i < data.length; i++) {
    const result = reader.push(data.subarray(i, i + 1));
    if (result !== undefined) return { result, consumed: i + 1 };
  }
  return undefined;
}

test('reader: v1 line byte by byte, then data in a later chunk', () => {
  const line = encodeProxyV1(V4);
  const reader = new ProxyHeaderReader();
  const outcome = feedByteByByte(reader, line);
  assert.ok(outcome);
  assert.equal(outcome.consumed, line.length);
  assert.deepEqual(outcome.result.endpoints, V4);
  assert.equal(outcome.result.rest.length, 0);
  assert.deepEqual(outcome.result.header, line);
});

test('reader: v2 with TLVs byte by byte', () => {
  const header = encodeProxyV2(V6, FULL_TLVS);
  const outcome = feedByteByByte(new ProxyHeaderReader(), header);
  assert.ok(outcome);
  assert.equal(outcome.consumed, header.length);
  assert.deepEqual(outcome.result.endpoints, V6);
  assert.deepEqual(outcome.result.header, header);
});

test('reader: bytes after the header come back as rest (v1 and v2)', () => {
  const tls = hex('16030100a5010000a10303');
  const v1 = new ProxyHeaderReader().push(Buffer.concat([encodeProxyV1(V6), tls]));
  assert.deepEqual(v1?.endpoints, V6);
  assert.deepEqual(v1?.rest, tls);
  const reader = new ProxyHeaderReader();
  const v2 = encodeProxyV2(V4, FULL_TLVS);
  assert.equal(reader.push(v2.subarray(0, 20)), undefined);
  const result = reader.push(Buffer.concat([v2.subarray(20), tls]));
  assert.deepEqual(result?.endpoints, V4);
  assert.deepEqual(result?.rest, tls);
});

test('reader: LOCAL, UNKNOWN and AF_UNSPEC give no endpoints', () => {
  const local = hex(`${SIG} 20 00 0000 abcd`);
  const localResult = new ProxyHeaderReader().push(local);
  assert.ok(localResult);
  assert.equal(localResult.endpoints, undefined);
  assert.deepEqual(localResult.rest, hex('abcd'));
  const unknown = new ProxyHeaderReader().push(Buffer.from('PROXY UNKNOWN ff::1 ::1 1 2\r\nX'));
  assert.ok(unknown);
  assert.equal(unknown.endpoints, undefined);
  assert.equal(unknown.rest.toString(), 'X');
  const unspec = new ProxyHeaderReader().push(encodeProxyV2({ ...V4, sourceAddress: 'x' }));
  assert.ok(unspec);
  assert.equal(unspec.endpoints, undefined);
});

test('reader: garbage is rejected as soon as it cannot be a PROXY header', () => {
  assertHeaderError(() => new ProxyHeaderReader().push(Buffer.from('GET / HTTP/1.1\r\n')));
  assertHeaderError(() => new ProxyHeaderReader().push(hex('160301')));
  const reader = new ProxyHeaderReader();
  assert.equal(reader.push(Buffer.from('PROX')), undefined);
  assertHeaderError(() => reader.push(Buffer.from('Y!')));
  assertHeaderError(() => new ProxyHeaderReader().push(Buffer.from('PROXY TCP4 1.2.3.4\r\n')));
  assertHeaderError(() => new ProxyHeaderReader().push(Buffer.from('PROXY TCP4 ::1 ::1 1 2\r\n')));
  assertHeaderError(() =>
    new ProxyHeaderReader().push(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n')),
  );
  assertHeaderError(() =>
    new ProxyHeaderReader().push(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n')),
  );
  assertHeaderError(() =>
    new ProxyHeaderReader().push(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n')),
  );
  // v2: bad version nibble, bad command, short IPv4 block, DGRAM transport
  assertHeaderError(() => new ProxyHeaderReader().push(hex(`${SIG} 11 11 000c`)));
  assertHeaderError(() => new ProxyHeaderReader().push(hex(`${SIG} 22 11 000c`)));
  assertHeaderError(() => new ProxyHeaderReader().push(hex(`${SIG} 21 11 0004 01020304`)));
  assertHeaderError(() =>
    new ProxyHeaderReader().push(hex(`${SIG} 21 12 000c c0a80001 0a000002 dc04 01bb`)),
  );
});

test('reader: oversize headers are rejected before they are buffered', () => {
  assertHeaderError(() => new ProxyHeaderReader().push(hex(`${SIG} 21 11 0300`)));
  const small = new ProxyHeaderReader(40);
  assertHeaderError(() => small.push(encodeProxyV2(V4, FULL_TLVS).subarray(0, 16)));
  const v1 = new ProxyHeaderReader();
  const longLine = Buffer.from(`PROXY TCP4 ${'1'.repeat(200)}`);
  assertHeaderError(() => {
    for (let i = 0; i < longLine.length; i++) v1.push(longLine.subarray(i, i + 1));
  });
});

test('reader: refuses reuse after a header was read', () => {
  const reader = new ProxyHeaderReader();
  assert.ok(reader.push(encodeProxyV1(V4)));
  assert.throws(() => reader.push(Buffer.from('x')), { code: 'UNHITCH_PROXY_HEADER_REUSED' });
});

test('v2 round trip through the reader for random endpoints', () => {
  const port = fc.integer({ min: 0, max: 65535 });
  fc.assert(
    fc.property(fc.ipV4(), fc.ipV4(), port, port, (src, dst, sp, dp) => {
      const endpoints = {
        sourceAddress: src,
        destinationAddress: dst,
        sourcePort: sp,
        destinationPort: dp,
      };
      const result = new ProxyHeaderReader().push(encodeProxyV2(endpoints, FULL_TLVS));
      assert.deepEqual(result?.endpoints, endpoints);
      const v1 = new ProxyHeaderReader().push(encodeProxyV1(endpoints));
      assert.deepEqual(v1?.endpoints, endpoints);
    }),
    { numRuns: 300 },
  );
});
