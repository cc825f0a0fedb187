/**
 * `npm start`: the quick start. Makes a self-signed certificate in ./tmp/tls on first run,
 * starts a demo WebTorrent tracker (bittorrent-tracker, WebSocket only) on
 * 127.0.0.1:3001 in a child process, and runs unhitch on wss://127.0.0.1:3000 in front
 * of it, configured through Hitch's own command-line flags.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runPrimary } from './cluster/primary.js';
import { parseCommandLine } from './config/load.js';
import { createLogger } from './ops/log.js';
import { ensureDemoCertificate } from './tls/demo-certificate.js';

// UNHITCH_DEMO_PORT moves the demo (tracker on the next port), e.g. for tests.
const FRONTEND_PORT = Number(process.env.UNHITCH_DEMO_PORT ?? 3000);
const TRACKER_PORT = FRONTEND_PORT + 1;
/** The certificate hitch-compat.conf names, made on first run. */
function ensureCertificate(): string {
  const certificate = ensureDemoCertificate();
  if (certificate.created)
    process.stdout.write(`made a self-signed certificate in ${certificate.dir}\n`);
  return certificate.combinedPath;
}

/** The tracker runs in its own process: the proxy's primary never serves traffic. */
function startTracker(): Promise<ChildProcess> {
  const entry = join(dirname(fileURLToPath(import.meta.url)), 'demo-tracker.js');
  const child = fork(entry, [String(TRACKER_PORT)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolvePromise, reject) => {
    child.once('message', () => resolvePromise(child));
    child.once('exit', (code) => reject(new Error(`demo tracker exited with status ${code}`)));
  });
}

async function main(): Promise<void> {
  const combinedPemPath = ensureCertificate();
  const tracker = await startTracker();
  // The IPC channel to the tracker would keep this process alive: end it on every path.
  try {
    await runProxy(combinedPemPath);
  } finally {
    tracker.kill();
    if (tracker.connected) tracker.disconnect();
  }
}

async function runProxy(combinedPemPath: string): Promise<void> {
  // The same flags a Hitch user would type; the config file form is hitch-compat.conf.
  const argv = [
    `--frontend=[127.0.0.1]:${FRONTEND_PORT}`,
    `--backend=[127.0.0.1]:${TRACKER_PORT}`,
    '--ssl-handshake-timeout=10',
    '--backend-connect-timeout=5',
    combinedPemPath,
  ];
  const action = parseCommandLine(argv);
  if (action.kind !== 'run') throw new Error('demo: unexpected command line');
  const logger = createLogger({
    level: action.config.logLevel,
    quiet: action.config.quiet,
    bindings: { role: 'primary' },
  });
  // The URL is printed once the workers listen: a client that uses it at once gets in.
  await runPrimary({
    argv,
    config: action.config,
    logger,
    onReady: () =>
      process.stdout.write(
        `unhitch demo: wss://127.0.0.1:${FRONTEND_PORT} -> ws://127.0.0.1:${TRACKER_PORT} (bittorrent-tracker); Ctrl-C stops\n`,
      ),
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`unhitch demo: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
