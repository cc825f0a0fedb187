/**
 * `npm start`: the quick start. Makes a self-signed certificate in ./tmp/tls on first run,
 * starts a demo WebTorrent tracker (bittorrent-tracker, WebSocket only) on
 * 127.0.0.1:3001 in a child process, and runs unhitch on wss://127.0.0.1:3000 in front
 * of it, configured through Hitch's own command-line flags.
 *
 * Not shipped: package.json `files` leaves out dist/src/demo, because bittorrent-tracker
 * is a devDependency. UNHITCH_DEMO_PORT moves the demo (the tracker takes the next port).
 */
import { type ChildProcess, fork } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runPrimary } from '../cluster/primary.js';
import { parseCommandLine } from '../config/load.js';
import { createLogger } from '../ops/log.js';
import { ensureDemoCertificate } from './certificate.js';

const FRONTEND_PORT = Number(process.env.UNHITCH_DEMO_PORT ?? 3000);
const TRACKER_PORT = FRONTEND_PORT + 1;
/**
 * One Ctrl-C under `npm start` reaches this process twice: the terminal sends SIGINT to
 * the whole foreground process group, and npm forwards its own copy to its child. Copies
 * this close together are one keypress; a later Ctrl-C is a second stop (exit at once).
 */
const ONE_KEYPRESS_MS = 1_000;

/**
 * SIGINT for the demo. The primary drains on SIGTERM only (stopSignals): each Ctrl-C,
 * once de-duplicated, becomes one SIGTERM to this process.
 */
class Interrupts {
  /** A Ctrl-C came (and is owed to the primary until `delivered`). */
  requested = false;
  private delivered = false;
  private lastAt = Number.NEGATIVE_INFINITY;
  private stopped = false;

  constructor() {
    process.on('SIGINT', () => this.onInterrupt());
  }

  /** The primary listens now: pass on a Ctrl-C that came while it started. */
  primaryListening(): void {
    if (this.requested && !this.delivered) this.stopPrimary();
  }

  /** The proxy has stopped: late copies of the last Ctrl-C are ignored, not fatal. */
  proxyStopped(): void {
    this.stopped = true;
  }

  private onInterrupt(): void {
    const now = performance.now();
    if (this.stopped || now - this.lastAt < ONE_KEYPRESS_MS) return;
    this.lastAt = now;
    // A second Ctrl-C while there is still no primary to stop (a start-up that hangs):
    // leave now, as Ctrl-C would without this handler.
    if (this.requested && !this.delivered && process.listenerCount('SIGTERM') === 0)
      process.exit(130);
    this.requested = true;
    this.stopPrimary();
  }

  private stopPrimary(): void {
    if (process.listenerCount('SIGTERM') === 0) return;
    this.delivered = true;
    process.kill(process.pid, 'SIGTERM');
  }
}

/** The certificate hitch-compat.conf names, made on first run. */
function ensureCertificate(): string {
  const certificate = ensureDemoCertificate();
  if (certificate.created)
    process.stdout.write(`made a self-signed certificate in ${certificate.dir}\n`);
  return certificate.combinedPath;
}

/** The tracker runs in its own process: the proxy's primary never serves traffic. */
function startTracker(): Promise<ChildProcess> {
  const entry = join(dirname(fileURLToPath(import.meta.url)), 'tracker.js');
  const child = fork(entry, [String(TRACKER_PORT)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolvePromise, reject) => {
    child.once('message', () => resolvePromise(child));
    child.once('exit', (code) => reject(new Error(`demo tracker exited with status ${code}`)));
  });
}

async function main(): Promise<void> {
  const interrupts = new Interrupts();
  const combinedPemPath = ensureCertificate();
  const tracker = await startTracker();
  // The IPC channel to the tracker would keep this process alive: end it on every path.
  try {
    if (!interrupts.requested) await runProxy(combinedPemPath, interrupts);
  } finally {
    interrupts.proxyStopped();
    tracker.kill();
    if (tracker.connected) tracker.disconnect();
  }
}

async function runProxy(combinedPemPath: string, interrupts: Interrupts): Promise<void> {
  // The same flags a Hitch user would type; the config file form is hitch-compat.conf.
  const argv = [
    `--frontend=[127.0.0.1]:${FRONTEND_PORT}`,
    `--backend=[127.0.0.1]:${TRACKER_PORT}`,
    '--ssl-handshake-timeout=10',
    '--backend-connect-timeout=5',
    ...demoIdentity(),
    combinedPemPath,
  ];
  const action = parseCommandLine(argv);
  if (action.kind !== 'run') throw new Error('demo: unexpected command line');
  const logger = createLogger({
    level: action.config.logLevel,
    quiet: action.config.quiet,
    format: action.config.logFormat,
    bindings: { role: 'primary' },
  });
  // The URL is printed once the workers listen: a client that uses it at once gets in.
  await runPrimary({
    argv,
    config: action.config,
    logger,
    stopSignals: ['SIGTERM'],
    onReady: () => {
      // Last, after the start-up lines still buffered: what a person needs to go on.
      logger.flush(() => {
        process.stdout.write(
          `\nunhitch demo: wss://127.0.0.1:${FRONTEND_PORT} -> ws://127.0.0.1:${TRACKER_PORT} (bittorrent-tracker)\nCtrl-C stops it.\n`,
        );
        interrupts.primaryListening();
      });
    },
  });
}

/**
 * unhitch, like Hitch, refuses to run workers as root. `npm start` as root (a fresh
 * machine, a container) should still work: the workers then run as `nobody` (with its
 * own group); the primary sends them the certificate, so they need read no file.
 */
function demoIdentity(): string[] {
  return process.getuid?.() === 0 ? ['--user=nobody'] : [];
}

main().catch((err: unknown) => {
  process.stderr.write(`unhitch demo: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
