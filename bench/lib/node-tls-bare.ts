/**
 * node:tls alone, no backend: the floor any node:tls terminator stands on. It answers a
 * WebSocket upgrade itself (so the capacity run can hold its connections) and then holds the
 * socket, answering each chunk read after the upgrade with one fixed announce reply (the
 * reconnect storm's client sends one announce and waits for its answer; idle clients send
 * nothing). It parses no frames: a tracker's work is not what it measures.
 * Usage: node node-tls-bare.js FRONTEND_PORT COMBINED_PEM
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:tls';
import { expectedAccept } from './raw-ws-client.js';

const MAX_REQUEST_BYTES = 8 * 1024;
/** An unmasked text frame (FIN, opcode 1) with a tracker's announce reply; under 126 bytes. */
const ANNOUNCE_PAYLOAD = Buffer.from(
  '{"action":"announce","interval":120,"complete":1,"incomplete":0}',
);
const ANNOUNCE_ANSWER = Buffer.concat([
  Buffer.from([0x81, ANNOUNCE_PAYLOAD.length]),
  ANNOUNCE_PAYLOAD,
]);

const [frontendPort, pemPath] = process.argv.slice(2);
if (!frontendPort || !pemPath) {
  process.stderr.write('usage: node-tls-bare FRONTEND_PORT COMBINED_PEM\n');
  process.exit(2);
}
const pem = readFileSync(pemPath);
const server = createServer({ key: pem, cert: pem }, (client) => {
  client.on('error', () => client.destroy());
  let request = '';
  const onData = (chunk: Buffer): void => {
    request += chunk.toString('latin1');
    const end = request.indexOf('\r\n\r\n');
    if (end === -1) {
      if (request.length > MAX_REQUEST_BYTES) client.destroy();
      return;
    }
    client.removeListener('data', onData);
    client.on('data', () => client.write(ANNOUNCE_ANSWER));
    client.resume();
    const key = /^sec-websocket-key:\s*(\S+)/im.exec(request.slice(0, end))?.[1];
    if (key === undefined) {
      client.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    const accept = expectedAccept(key);
    client.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
  };
  client.on('data', onData);
});
server.listen(Number(frontendPort), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
