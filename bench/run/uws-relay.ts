/**
 * EXPERIMENT entry: the uWS WebSocket relay (bench/lib/uws-relay.ts) as a process.
 *   node dist/bench/uws-relay.js --listen=PORT --backend=HOST:PORT --cert=FILE --key=FILE
 *     [--client=ws|raw] [--host=127.0.0.1]
 * The compare harness starts it as proxies `uws-relay` (ws client) and `uws-relay-raw`.
 */
import { parseFlags } from '../lib/cli-args.js';
import { type BackendClientKind, startUwsRelay } from '../lib/uws-relay.js';

function badArgument(message: string): Error {
  return Object.assign(new Error(message), { code: 'BENCH_BAD_ARGUMENT' });
}

function requiredFlag(flags: ReadonlyMap<string, string>, name: string): string {
  const value = flags.get(name);
  if (value === undefined || value === 'true') throw badArgument(`--${name}=… is required`);
  return value;
}

function parseHostPort(text: string): { host: string; port: number } {
  const colon = text.lastIndexOf(':');
  const port = Number(text.slice(colon + 1));
  if (colon <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) {
    throw badArgument(`--backend needs HOST:PORT, got ${text}`);
  }
  return { host: text.slice(0, colon).replace(/^\[|\]$/g, ''), port };
}

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2), [
    'listen',
    'backend',
    'cert',
    'key',
    'client',
    'host',
  ]);
  const listenPort = Number(requiredFlag(flags, 'listen'));
  if (!Number.isInteger(listenPort) || listenPort < 0 || listenPort > 65535) {
    throw badArgument('--listen needs a port number');
  }
  const backend = parseHostPort(requiredFlag(flags, 'backend'));
  const client = flags.get('client') ?? 'ws';
  if (client !== 'ws' && client !== 'raw') throw badArgument('--client must be ws or raw');
  const relay = await startUwsRelay({
    listenHost: flags.get('host') ?? '127.0.0.1',
    listenPort,
    backendHost: backend.host,
    backendPort: backend.port,
    certPath: requiredFlag(flags, 'cert'),
    keyPath: requiredFlag(flags, 'key'),
    backendClient: client as BackendClientKind,
  });
  process.stderr.write(`uws-relay (${client} backend client) listening on ${relay.port}\n`);
  process.on('SIGTERM', () => process.exit(0));
  process.on('SIGINT', () => process.exit(0));
}

main().catch((err: unknown) => {
  const code = (err as { code?: unknown }).code;
  process.stderr.write(
    `uws-relay: ${(err as Error).message}${typeof code === 'string' ? ` [${code}]` : ''}\n`,
  );
  process.exit(1);
});
