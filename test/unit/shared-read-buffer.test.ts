import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { AddressInfo, Socket } from 'node:net';
import test from 'node:test';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { readIntoSharedBuffer } from '../../src/proxy/shared-read-buffer.js';
import { makeCertificate } from '../kit/pki.js';

const PEM = readFileSync(makeCertificate('shared-read-buffer').combinedPath);

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** A TLS server whose accepted sockets go to `onSocket`, and a client connected to it. */
async function tlsPair(
  t: { after: (fn: () => void) => void },
  onSocket: (socket: TLSSocket) => void,
): Promise<TLSSocket> {
  const server = createServer({ key: PEM, cert: PEM }, onSocket);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const client = connect({
    port: (server.address() as AddressInfo).port,
    host: '127.0.0.1',
    rejectUnauthorized: false,
  });
  t.after(() => client.destroy());
  await new Promise((resolve) => client.once('secureConnect', resolve));
  return client;
}

test('the supported node lines let a server TLSSocket read into the shared buffer: every byte, in order, in pieces of at most 16 KiB, then end', async (t) => {
  const sent = randomBytes(300 * 1024);
  const received: Buffer[] = [];
  let largest = 0;
  let switched: boolean | undefined;
  const ended = new Promise<void>((resolve, reject) => {
    void tlsPair(t, (socket) => {
      switched = readIntoSharedBuffer(socket, function (this: Socket, nread, buffer) {
        assert.equal(this, socket);
        largest = Math.max(largest, nread);
        received.push(Buffer.from(buffer.subarray(0, nread)));
        return true;
      });
      socket.on('data', () => reject(new Error('a read came as data')));
      socket.on('end', resolve);
      socket.on('error', reject);
    }).then((client) => client.end(sent), reject);
  });
  await ended;
  assert.equal(switched, true, 'this node keeps onread machinery under the symbols we look for');
  assert.ok(largest <= 16 * 1024, `largest read ${largest}`);
  assert.equal(sha256(Buffer.concat(received)), sha256(sent));
});

test('a reader that returns false stops reading until resume()', async (t) => {
  const first = Buffer.alloc(1000, 1);
  const second = Buffer.alloc(1000, 2);
  let serverSocket: TLSSocket | undefined;
  const reads: number[] = [];
  let gotFirst!: () => void;
  const firstArrived = new Promise<void>((resolve) => {
    gotFirst = resolve;
  });
  const client = await tlsPair(t, (socket) => {
    serverSocket = socket;
    readIntoSharedBuffer(socket, (nread, buffer) => {
      reads.push(buffer[0] ?? 0);
      gotFirst();
      return nread < 0;
    });
    socket.on('data', () => assert.fail('a read came as data'));
  });
  client.write(first);
  await firstArrived;
  assert.deepEqual(reads, [1]);
  // Written while reading is stopped: it waits in the kernel, not in a callback.
  await new Promise<void>((resolve) => client.write(second, () => resolve()));
  const handle = (serverSocket as TLSSocket & { _handle: { reading: boolean } })._handle;
  assert.equal(handle.reading, false, 'the false return stopped reading');
  assert.deepEqual(reads, [1]);
  const resumed = new Promise<void>((resolve) => {
    const poll = setInterval(() => {
      if (reads.length === 2) {
        clearInterval(poll);
        resolve();
      }
    }, 5);
  });
  serverSocket?.resume();
  await resumed;
  assert.deepEqual(reads, [1, 2]);
});
