/**
 * The naive reference terminator: node:tls server piped to a TCP backend, nothing else.
 * Usage: node node-tls-pipe.js FRONTEND_PORT BACKEND_PORT COMBINED_PEM
 */
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { createServer } from 'node:tls';

const [frontendPort, backendPort, pemPath] = process.argv.slice(2);
if (!frontendPort || !backendPort || !pemPath) {
  process.stderr.write('usage: node-tls-pipe FRONTEND_PORT BACKEND_PORT COMBINED_PEM\n');
  process.exit(2);
}
const pem = readFileSync(pemPath);
const server = createServer({ key: pem, cert: pem }, (client) => {
  const upstream = connect({ host: '127.0.0.1', port: Number(backendPort) });
  client.pipe(upstream).pipe(client);
  const close = (): void => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', close);
  upstream.on('error', close);
  client.on('close', close);
  upstream.on('close', close);
});
server.listen(Number(frontendPort), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
