/**
 * A real ClientHello, for attacks that send it in odd shapes: node's own, captured once from a
 * tls.connect to a loopback listener that reads it and closes, then cut into 1-byte TLS
 * records (each a legal record: a handshake message may span any number of them) or trickled
 * byte by byte.
 */
import { createServer, type Socket } from 'node:net';
import { connect } from 'node:tls';

const RECORD_HEADER_BYTES = 5;
const CONTENT_TYPE_HANDSHAKE = 0x16;
const CAPTURE_TIMEOUT_MS = 5_000;

/** The length of the first TLS record in `bytes`, header included; null while incomplete. */
export function firstRecordLength(bytes: Buffer): number | null {
  if (bytes.length < RECORD_HEADER_BYTES) return null;
  const length = RECORD_HEADER_BYTES + bytes.readUInt16BE(3);
  return bytes.length >= length ? length : null;
}

/**
 * The handshake payload of `record` (one TLS record) re-sent as records of one byte each:
 * a 6-byte record per payload byte, with the original record's version field.
 */
export function oneByteRecords(record: Buffer): Buffer[] {
  if (record[0] !== CONTENT_TYPE_HANDSHAKE || record.length < RECORD_HEADER_BYTES + 1) {
    throw new Error('not a TLS handshake record');
  }
  const records: Buffer[] = [];
  for (let i = RECORD_HEADER_BYTES; i < record.length; i++) {
    records.push(
      Buffer.from([
        CONTENT_TYPE_HANDSHAKE,
        record[1] as number,
        record[2] as number,
        0,
        1,
        record[i] as number,
      ]),
    );
  }
  return records;
}

/** The first record node's TLS client sends to `servername` (its ClientHello), X25519 only. */
export function captureClientHello(servername = 'localhost'): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let client: ReturnType<typeof connect> | undefined;
    const server = createServer((socket: Socket) => {
      let bytes = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        bytes = Buffer.concat([bytes, chunk]);
        const length = firstRecordLength(bytes);
        if (length === null) return;
        finish(null, bytes.subarray(0, length));
        socket.destroy();
      });
      socket.on('error', () => {});
    });
    const timer = setTimeout(
      () => finish(new Error('no ClientHello within 5 s'), null),
      CAPTURE_TIMEOUT_MS,
    );
    const finish = (err: Error | null, hello: Buffer | null): void => {
      clearTimeout(timer);
      client?.destroy();
      server.close();
      if (hello !== null) resolve(Buffer.from(hello));
      else reject(err);
    };
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address === null || typeof address === 'string') return;
      client = connect({
        host: '127.0.0.1',
        port: address.port,
        servername,
        ecdhCurve: 'X25519',
        rejectUnauthorized: false,
      });
      client.on('error', () => {});
    });
  });
}
