#!/usr/bin/env node
/** A trivial keep-alive HTTP backend for the HTTPS bench. Usage: node http-hello.js PORT */
import { createServer } from 'node:http';

const body = Buffer.from('hello\n');
const port = Number(process.argv[2] ?? 0);
const server = createServer((_request, response) => {
  response.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  response.end(body);
});
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1', () => process.stdout.write(`http-hello listening on ${port}\n`));
process.on('SIGTERM', () => process.exit(0));
