#!/usr/bin/env node
/** A backend that accepts TCP connections and holds them (for handshake benches). Usage: node tcp-sink.js PORT */
import { createServer } from 'node:net';

const port = Number(process.argv[2] ?? 0);
const server = createServer((socket) => {
  socket.on('error', () => socket.destroy());
  socket.resume(); // discard anything sent
});
server.listen(port, '127.0.0.1', () => process.stdout.write(`tcp-sink listening on ${port}\n`));
process.on('SIGTERM', () => process.exit(0));
