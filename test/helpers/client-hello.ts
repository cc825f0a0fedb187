/**
 * The first flight of a real node:tls client (its ClientHello), caught by a plain TCP
 * listener, for tests that play a client byte by byte.
 */
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { type ConnectionOptions, connect as tlsConnect } from 'node:tls';
import { closeBackend, startBackend, waitFor } from '../kit/proxy-fixture.js';

export async function captureClientHello(options: ConnectionOptions = {}): Promise<Buffer> {
  const catcher = await startBackend(() => {});
  try {
    const client = tlsConnect({
      host: '127.0.0.1',
      port: catcher.port,
      servername: 'localhost',
      rejectUnauthorized: false,
      ...options,
    });
    client.on('error', () => {});
    await waitFor(() => catcher.sockets.size === 1, 5_000, 'client hello connection');
    const [socket] = [...catcher.sockets] as [Socket];
    const [hello] = (await once(socket, 'data')) as [Buffer];
    client.destroy();
    return hello;
  } finally {
    closeBackend(catcher);
  }
}

/**
 * A ClientHello message (handshake header included, no record framing) naming
 * `servername`, grown with `cipherBytes` of cipher suites and a padding extension of
 * `paddingBytes` (RFC 7685): how a hello reaches OpenSSL's 128 KiB bound.
 */
export function syntheticClientHello(
  servername: string,
  paddingBytes: number,
  cipherBytes = 2,
): Buffer {
  const name = Buffer.from(servername, 'latin1');
  const sni = Buffer.alloc(9 + name.length);
  sni.writeUInt16BE(0x0000, 0); // server_name
  sni.writeUInt16BE(5 + name.length, 2);
  sni.writeUInt16BE(3 + name.length, 4);
  sni.writeUInt8(0, 6); // host_name
  sni.writeUInt16BE(name.length, 7);
  name.copy(sni, 9);
  const padding = Buffer.alloc(4 + paddingBytes);
  padding.writeUInt16BE(21, 0);
  padding.writeUInt16BE(paddingBytes, 2);
  const extensions = Buffer.concat([sni, padding]);
  const ciphers = Buffer.alloc(2 + cipherBytes, 0x13);
  ciphers.writeUInt16BE(cipherBytes, 0);
  const extensionsLength = Buffer.alloc(2);
  extensionsLength.writeUInt16BE(extensions.length, 0);
  const body = Buffer.concat([
    Buffer.from([3, 3]),
    Buffer.alloc(32), // random
    Buffer.from([0]), // session id
    ciphers,
    Buffer.from([1, 0]), // compression: null
    extensionsLength,
    extensions,
  ]);
  const header = Buffer.alloc(4);
  header.writeUInt8(1, 0);
  header.writeUIntBE(body.length, 1, 3);
  return Buffer.concat([header, body]);
}

/** A handshake message cut into TLS records of at most `size` payload bytes. */
export function inRecords(message: Buffer, size: number): Buffer {
  const records: Buffer[] = [];
  for (let at = 0; at < message.length; at += size) {
    const part = message.subarray(at, at + size);
    const header = Buffer.from([0x16, 0x03, 0x01, 0, 0]);
    header.writeUInt16BE(part.length, 3);
    records.push(header, part);
  }
  return Buffer.concat(records);
}

/**
 * A stream for `tls.connect({ socket })` over `raw` that re-cuts the client's first flight
 * (its ClientHello record) into records of `size` payload bytes, each written on its own
 * turn of the event loop: with TCP_NODELAY, each its own TCP segment.
 */
export function fragmentingSocket(raw: Socket, size: number): Duplex {
  return firstFlightSocket(raw, async (flight) => {
    const records = inRecords(flight.subarray(5), size);
    const recordBytes = 5 + size;
    for (let at = 0; at < records.length; at += recordBytes) {
      raw.write(records.subarray(at, at + recordBytes));
      await new Promise((resolve) => setImmediate(resolve));
    }
  });
}

/**
 * A stream for `tls.connect({ socket })` over `raw` that sends the first `firstBytes` of
 * the client's ClientHello at once and the rest when `release` resolves: a client caught
 * mid-hello by whatever the test does in between.
 */
export function heldHelloSocket(raw: Socket, firstBytes: number, release: Promise<void>): Duplex {
  return firstFlightSocket(raw, async (flight) => {
    raw.write(flight.subarray(0, firstBytes));
    await release;
    raw.write(flight.subarray(firstBytes));
  });
}

/** A Duplex over `raw` whose first write (the ClientHello) goes out as `sendFirst` says. */
function firstFlightSocket(raw: Socket, sendFirst: (flight: Buffer) => Promise<void>): Duplex {
  let first = true;
  const stream = new Duplex({
    write(chunk: Buffer, _encoding, callback) {
      if (!first) {
        raw.write(chunk, callback);
        return;
      }
      first = false;
      sendFirst(chunk).then(() => callback(), callback);
    },
    read() {},
    final(callback) {
      raw.end();
      callback();
    },
  });
  raw.setNoDelay(true);
  raw.on('data', (chunk: Buffer) => stream.push(chunk));
  raw.on('end', () => stream.push(null));
  raw.on('error', (error) => stream.destroy(error));
  return stream;
}
