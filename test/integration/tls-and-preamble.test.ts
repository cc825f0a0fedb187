/**
 * TLS policy (versions, SNI, ALPN) and what the backend sees first (PROXY v1/v2 with
 * Hitch's TLVs, proxy-proxy, X-Forwarded-For), checked byte for byte over real sockets.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer as createHttpServer } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { type TestContext, test } from 'node:test';
import { type ConnectionOptions, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { DEFAULT_TLS } from '../../src/config/model.js';
import { fragmentingSocket } from '../helpers/client-hello.js';
import { announceOnce, startTracker } from '../helpers/webtorrent.js';
import { localhostCertificate, makeCertificate } from '../kit/pki.js';
import {
  closeBackend,
  connectClient,
  frontendOn,
  readAll,
  startBackend,
  startProxy,
  waitFor,
} from '../kit/proxy-fixture.js';

/** A backend that records everything each connection sends until EOF. */
async function recordingBackend() {
  const received: Promise<Buffer>[] = [];
  const backend = await startBackend((socket: Socket) => {
    received.push(readAll(socket));
  });
  return { ...backend, received };
}

/** A TLS client that first sends a PROXY header on its raw connection, as a balancer would. */
async function tlsAfterProxyHeader(port: number, header: string | Buffer): Promise<TLSSocket> {
  const raw = netConnect(port, '127.0.0.1');
  await once(raw, 'connect');
  raw.write(header);
  const client = tlsConnect({ socket: raw, rejectUnauthorized: false, servername: 'localhost' });
  await once(client, 'secureConnect');
  return client;
}

test('PROXY v1: the exact line Hitch writes, then the client bytes', async (t) => {
  const backend = await recordingBackend();
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port, { proxyProtocol: 'v1' });
  t.after(() => proxy.close());

  const client = await connectClient(proxy.port);
  const clientPort = client.localPort;
  client.end('payload');
  await waitFor(() => backend.received.length === 1);
  const bytes = await backend.received[0];
  assert.equal(
    bytes?.toString('latin1'),
    `PROXY TCP4 127.0.0.1 127.0.0.1 ${clientPort} ${proxy.port}\r\npayload`,
  );
});

test('PROXY v2: address block and TLVs (ALPN, authority, SSL version + cipher) byte for byte', async (t) => {
  const backend = await recordingBackend();
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port, { proxyProtocol: 'v2', alpnProtos: ['http/1.1'] });
  t.after(() => proxy.close());

  const client = await connectClient(proxy.port, {
    ALPNProtocols: ['http/1.1'],
    servername: 'localhost',
  });
  const clientPort = client.localPort ?? 0;
  const cipher = client.getCipher().name;
  assert.equal(client.getProtocol(), 'TLSv1.3');
  client.end('x');
  await waitFor(() => backend.received.length === 1);
  const bytes = (await backend.received[0]) as Buffer;

  const tlv = (type: number, value: Buffer): Buffer => {
    const head = Buffer.alloc(3);
    head[0] = type;
    head.writeUInt16BE(value.length, 1);
    return Buffer.concat([head, value]);
  };
  const ssl = tlv(
    0x20,
    Buffer.concat([
      Buffer.from([0x01, 0, 0, 0, 1]), // PP2_CLIENT_SSL; verify 1: no client certificate verified
      tlv(0x21, Buffer.from('TLSv1.3')),
      tlv(0x23, Buffer.from(cipher)),
    ]),
  );
  const tlvs = Buffer.concat([
    tlv(0x01, Buffer.from('http/1.1')),
    tlv(0x02, Buffer.from('localhost')),
    ssl,
  ]);
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(clientPort, 0);
  ports.writeUInt16BE(proxy.port, 2);
  const length = Buffer.alloc(2);
  length.writeUInt16BE(12 + tlvs.length);
  const expected = Buffer.concat([
    Buffer.from('0d0a0d0a000d0a515549540a', 'hex'),
    Buffer.from([0x21, 0x11]),
    length,
    Buffer.from([127, 0, 0, 1, 127, 0, 0, 1]),
    ports,
    tlvs,
    Buffer.from('x'),
  ]);
  assert.equal(bytes.toString('hex'), expected.toString('hex'));
});

test('proxy-proxy: a PROXY v1 header before the ClientHello becomes the client address', async (t) => {
  const backend = await recordingBackend();
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port, { proxyProxy: true, proxyProtocol: 'v1' });
  t.after(() => proxy.close());

  const client = await tlsAfterProxyHeader(
    proxy.port,
    'PROXY TCP4 198.51.100.7 203.0.113.9 40000 443\r\n',
  );
  client.end('hi');
  await waitFor(() => backend.received.length === 1);
  const bytes = await backend.received[0];
  assert.equal(bytes?.toString('latin1'), 'PROXY TCP4 198.51.100.7 203.0.113.9 40000 443\r\nhi');
});

test('proxy-proxy alone: a PROXY v2 header (with TLVs) reaches the backend byte for byte', async (t) => {
  const backend = await recordingBackend();
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port, { proxyProxy: true });
  t.after(() => proxy.close());

  // v2, PROXY, TCP4 198.51.100.7:40000 → 203.0.113.9:443, one AUTHORITY TLV "lb".
  const header = Buffer.from(
    '0d0a0d0a000d0a515549540a' +
      '2111' +
      '0011' +
      'c6336407' +
      'cb007109' +
      '9c40' +
      '01bb' +
      '020002' +
      '6c62',
    'hex',
  );
  const client = await tlsAfterProxyHeader(proxy.port, header);
  client.end('hi');
  await waitFor(() => backend.received.length === 1);
  const bytes = (await backend.received[0]) as Buffer;
  assert.equal(bytes.toString('hex'), Buffer.concat([header, Buffer.from('hi')]).toString('hex'));
});

test('proxy-proxy with forwarded-for: the PROXY source becomes X-Forwarded-For and the header is not passed on', async (t) => {
  const backend = await recordingBackend();
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port, { proxyProxy: true, forwardedFor: true });
  t.after(() => proxy.close());

  // What HAProxy's send-proxy-v2 writes: TCP4 198.51.100.7:40000 → 203.0.113.9:443.
  const header = Buffer.from(
    '0d0a0d0a000d0a515549540a' + '2111' + '000c' + 'c6336407' + 'cb007109' + '9c40' + '01bb',
    'hex',
  );
  const client = await tlsAfterProxyHeader(proxy.port, header);
  client.end('GET /announce HTTP/1.1\r\nHost: tracker\r\n\r\n');
  await waitFor(() => backend.received.length === 1);
  const text = ((await backend.received[0]) as Buffer).toString('latin1');
  // An HTTP backend (bittorrent-tracker) answers 400 to a PROXY header before the request.
  assert.match(text, /^GET \/announce HTTP\/1\.1\r\n/);
  assert.match(text, /\r\nX-Forwarded-For: 198\.51\.100\.7\r\n/i);
});

test('proxy-proxy: garbage instead of a PROXY header is closed with a reason', async (t) => {
  const backend = await recordingBackend();
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port, { proxyProxy: true });
  t.after(() => proxy.close());

  const raw = netConnect(proxy.port, '127.0.0.1');
  raw.on('error', () => {});
  raw.write('GET / HTTP/1.1\r\n\r\n');
  raw.resume();
  await once(raw, 'close');
  await waitFor(() => proxy.log.withReason('proxy_header_invalid').length === 1);
  assert.equal(backend.received.length, 0);
});

test('forwarded-for: bittorrent-tracker (trustProxy) sees the real client in every request of a keep-alive connection and in a WebSocket announce', {
  timeout: 20_000,
}, async (t) => {
  const { tracker, port: trackerPort } = await startTracker(t, { http: true, ws: true });
  const seen: string[] = [];
  // The address the tracker keeps for the peer: from X-Forwarded-For, as trustProxy says.
  tracker.on('start', (_addr: string, params: { ip: string }) => seen.push(params.ip));
  const proxy = await startProxy(trackerPort, { forwardedFor: true });
  t.after(() => proxy.close());

  // Two HTTP announces pipelined on one connection, each with a forged X-Forwarded-For.
  const announce = (peer: string, forged: string): string =>
    `GET /announce?info_hash=${'i'.repeat(20)}&peer_id=${peer.repeat(20)}&port=6881&left=0&event=started HTTP/1.1\r\n` +
    `Host: tracker\r\nX-Forwarded-For: ${forged}\r\n\r\n`;
  // The client comes from 127.0.0.5 and unhitch reaches the tracker from 127.0.0.1: the
  // tracker can name 127.0.0.5 only from the header unhitch wrote.
  const clientAddress = '127.0.0.5';
  const client = await connectClient(proxy.port, {
    localAddress: clientAddress,
  } as ConnectionOptions);
  client.write(announce('a', '6.6.6.6') + announce('b', '7.7.7.7'));
  await waitFor(() => seen.length === 2, 5_000, 'two announces');
  client.destroy();
  // And a WebSocket announce: the upgrade request is rewritten, its frames pass untouched.
  const response = await announceOnce(`wss://127.0.0.1:${proxy.port}`, {
    localAddress: clientAddress,
  });
  assert.equal(response['failure reason'], undefined);
  await waitFor(() => seen.length === 3, 5_000, 'the WebSocket announce');
  assert.deepEqual(seen, [clientAddress, clientAddress, clientAddress]);
});

/** forwarded-for on, a recording backend, and one client connected. */
async function forwardingPair(t: TestContext) {
  const backend = await recordingBackend();
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port, { forwardedFor: true });
  t.after(() => proxy.close());
  return { backend, proxy, client: await connectClient(proxy.port) };
}

test('forwarded-for: a request head over 16 KiB gets 431 and a close; the backend gets none of it', {
  timeout: 20_000,
}, async (t) => {
  const { backend, proxy, client } = await forwardingPair(t);
  const reply = readAll(client);
  client.write(
    `GET / HTTP/1.1\r\nX-Forwarded-For: 6.6.6.6\r\nX-Pad: ${'p'.repeat(17_000)}\r\n\r\n`,
  );
  const text = (await reply).toString('latin1');
  assert.match(text, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
  assert.match(text, /\r\nConnection: close\r\n/);
  await waitFor(() => proxy.log.withReason('request_head_too_large').length === 1, 5_000);
  await waitFor(() => backend.received.length === 1, 5_000, 'backend connection');
  assert.equal((await backend.received[0])?.length, 0, 'no byte of it reached the backend');
});

test('forwarded-for: a partial request head then the FIN: the backend gets the bytes, then EOF', {
  timeout: 20_000,
}, async (t) => {
  const { backend, client } = await forwardingPair(t);
  client.resume();
  client.end('GET /announce HTTP/1.1\r\nHost: tra');
  await waitFor(() => backend.received.length === 1, 5_000, 'backend connection');
  assert.equal(
    (await backend.received[0])?.toString('latin1'),
    'GET /announce HTTP/1.1\r\nHost: tra',
  );
});

test('forwarded-for: a 400 still owed when the backend closes first reaches the client, then the close', {
  timeout: 20_000,
}, async (t) => {
  // Answers the first request with a body framed by its close, then sends its FIN.
  const backend = await startBackend((socket) => {
    socket.once('data', () => socket.end('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbye'));
    socket.resume();
  });
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port, { forwardedFor: true });
  t.after(() => proxy.close());
  const client = await connectClient(proxy.port);
  const reply = readAll(client);
  client.write('GET / HTTP/1.1\r\nHost: x\r\n\r\nNOT HTTP AT ALL\r\n\r\n');
  const text = (await reply).toString('latin1');
  assert.match(
    text,
    /^HTTP\/1\.1 200 OK\r\nConnection: close\r\n\r\nbyeHTTP\/1\.1 400 Bad Request\r\n/,
  );
  await waitFor(() => proxy.log.withReason('request_invalid').length === 1, 5_000);
});

test('SNI: exact name, wildcard, default certificate; sni-nomatch-abort refuses unknown names', async (t) => {
  const backend = await recordingBackend();
  t.after(() => closeBackend(backend));
  const alpha = makeCertificate('alpha', ['alpha.example.com']);
  const wild = makeCertificate('wild', ['*.wild.example.com']);
  const fallback = localhostCertificate();
  // The last pem-file is the default, as in Hitch.
  const certificates = [alpha.material, wild.material, fallback.material];
  const proxy = await startProxy(backend.port, {}, certificates);
  t.after(() => proxy.close());

  const servedName = async (port: number, servername: string): Promise<string> => {
    const client = await connectClient(port, { servername });
    const subject = client.getPeerCertificate().subject?.CN ?? '';
    client.destroy();
    return String(subject);
  };
  assert.equal(await servedName(proxy.port, 'alpha.example.com'), 'alpha.example.com');
  assert.equal(await servedName(proxy.port, 'ALPHA.example.com'), 'alpha.example.com');
  assert.equal(await servedName(proxy.port, 'x.wild.example.com'), '*.wild.example.com');
  assert.equal(
    await servedName(proxy.port, 'a.b.wild.example.com'),
    'localhost',
    'wildcards cover one label',
  );
  assert.equal(await servedName(proxy.port, 'unknown.example.org'), 'localhost');

  const strict = await startProxy(
    backend.port,
    { tls: { ...DEFAULT_TLS, sniNomatchAbort: true } },
    certificates,
  );
  t.after(() => strict.close());
  assert.equal(await servedName(strict.port, 'x.wild.example.com'), '*.wild.example.com');
  await assert.rejects(connectClient(strict.port, { servername: 'unknown.example.org' }));
  await waitFor(
    () => strict.log.withReason('sni_nomatch').length === 1,
    2_000,
    'sni_nomatch log line',
  );
});

test('SNI routing reads a ClientHello cut into tiny records, each in its own TCP segment', async (t) => {
  const backend = await startBackend((socket) => socket.pipe(socket));
  t.after(() => closeBackend(backend));
  const alpha = makeCertificate('alpha-fragments', ['alpha.example.com']);
  const proxy = await startProxy(backend.port, { tls: { ...DEFAULT_TLS, sniNomatchAbort: true } }, [
    alpha.material,
    localhostCertificate().material,
  ]);
  t.after(() => proxy.close());
  for (const size of [1, 3, 50]) {
    const raw = netConnect(proxy.port, '127.0.0.1');
    await once(raw, 'connect');
    const client = tlsConnect({
      socket: fragmentingSocket(raw, size),
      servername: 'alpha.example.com',
      rejectUnauthorized: false,
    });
    await once(client, 'secureConnect');
    assert.equal(
      client.getPeerCertificate().subject?.CN,
      'alpha.example.com',
      `${size}-byte records`,
    );
    client.write('ping');
    const [echo] = (await once(client, 'data')) as [Buffer];
    assert.equal(echo.toString(), 'ping');
    client.destroy();
  }
});

test('TLS 1.1 and 1.0 are refused by default; TLS 1.2 and 1.3 are accepted', async (t) => {
  const backend = await recordingBackend();
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port);
  t.after(() => proxy.close());

  for (const version of ['TLSv1', 'TLSv1.1'] as const) {
    // SECLEVEL 0: this client can offer TLS 1.0/1.1, so the refusal is the server's alert
    // (protocol_version), not the client's "no protocols available".
    await assert.rejects(
      connectClient(proxy.port, {
        minVersion: version,
        maxVersion: version,
        ciphers: 'DEFAULT@SECLEVEL=0',
      }),
      { code: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION' },
      `${version} must be refused by the server`,
    );
  }
  for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
    const client = await connectClient(proxy.port, { minVersion: version, maxVersion: version });
    assert.equal(client.getProtocol(), version);
    client.destroy();
  }
});

test('tls-protos TLSv1.2 only: a TLS 1.3-only client is refused', async (t) => {
  const backend = await recordingBackend();
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port, {
    frontends: [frontendOn(0, { tlsProtos: ['TLSv1.2'] })],
  });
  t.after(() => proxy.close());

  await assert.rejects(connectClient(proxy.port, { minVersion: 'TLSv1.3' }));
  const client = await connectClient(proxy.port);
  assert.equal(client.getProtocol(), 'TLSv1.2');
  client.destroy();
});

test('openssl s_client: TLS 1.3 handshake and data reach the backend; -tls1_1 fails', async (t) => {
  const backend = await recordingBackend();
  t.after(() => closeBackend(backend));
  const proxy = await startProxy(backend.port);
  t.after(() => proxy.close());

  const run = (args: string[], input: string) =>
    new Promise<{ code: number | null; output: string }>((resolve) => {
      const child = spawn(
        'openssl',
        // -quiet implies -ign_eof; -no_ign_eof makes s_client close the connection and
        // exit at the end of its input instead of waiting for the server to close.
        ['s_client', '-connect', `127.0.0.1:${proxy.port}`, '-quiet', '-no_ign_eof', ...args],
        {
          stdio: ['pipe', 'pipe', 'pipe'],
        },
      );
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString();
      });
      child.stderr.on('data', (chunk: Buffer) => {
        output += chunk.toString();
      });
      child.stdin.end(input);
      // A bound, not a wait: a hung s_client is killed and fails the exit-code assertion.
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, output: signal === null ? output : `${output}\n(killed by ${signal})` });
      });
    });

  const ok = await run(['-tls1_3', '-servername', 'localhost'], 'hello from openssl\n');
  assert.equal(ok.code, 0, `s_client ended on its own after its input: ${ok.output}`);
  await waitFor(() => backend.received.length === 1, 5_000, `backend connection (${ok.output})`);
  assert.equal((await backend.received[0])?.toString(), 'hello from openssl\n');

  const old = await run(['-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0'], '');
  assert.notEqual(old.code, 0, old.output);
  assert.match(old.output, /alert protocol version/, 'refused by the server, not the client');
  assert.equal(backend.received.length, 1, 'no backend connection for the refused handshake');
});

test('curl over HTTPS through unhitch to an HTTP backend, with forwarded-for', async (t) => {
  const server = createHttpServer((request, response) => {
    response.end(
      `xff=${request.headers['x-forwarded-for']} proto=${request.headers['x-forwarded-proto']}`,
    );
  });
  let backendConnections = 0;
  server.on('connection', () => {
    backendConnections += 1;
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const port = (server.address() as { port: number }).port;
  const proxy = await startProxy(port, { forwardedFor: true, alpnProtos: ['http/1.1'] });
  t.after(() => proxy.close());

  const body = await new Promise<string>((resolve, reject) => {
    execFile(
      'curl',
      [
        '--silent',
        '--show-error',
        '--insecure',
        '--http1.1',
        '-H',
        'X-Forwarded-For: 6.6.6.6',
        `https://127.0.0.1:${proxy.port}/`,
        // The same connection again (curl reuses it): the second request is rewritten too.
        `https://127.0.0.1:${proxy.port}/`,
      ],
      { timeout: 10_000 },
      (error, stdout) => (error ? reject(error) : resolve(stdout)),
    );
  });
  assert.equal(body, 'xff=127.0.0.1 proto=https'.repeat(2));
  assert.equal(backendConnections, 1, 'both requests on one connection');
});
