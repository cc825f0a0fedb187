#!/usr/bin/env node
/** A backend that echoes every byte back at once (for latency benches). Usage: node tcp-echo.js PORT */
import { createServer } from 'node:net';

const port = Number(process.argv[2] ?? 0);
const server = createServer({ noDelay: true }, (socket) => {
  socket.on('error', () => socket.destroy());
  socket.pipe(socket);
});
server.listen(port, '127.0.0.1', () => process.stdout.write(`tcp-echo listening on ${port}\n`));
process.on('SIGTERM', () => process.exit(0));
