/**
 * Let's Encrypt's test CA on loopback: Debian's `pebble` with `pebble-challtestsrv` as
 * its DNS (every name → 127.0.0.1, no AAAA so pebble never dials ::1). Pebble validates
 * for real: tls-alpn-01 against `tlsPort`, http-01 against `httpPort` on 127.0.0.1. Its
 * own HTTPS listener gets a certificate made here (Debian ships none); the unhitch under
 * test trusts it through NODE_EXTRA_CA_CERTS.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { makeSelfSigned } from '../../src/tls/selfsigned.js';
import { freePort } from '../kit/ports.js';

export interface PebbleOptions {
  /** Where pebble connects for tls-alpn-01 (the unhitch frontend). */
  readonly tlsPort: number;
  /** Where pebble connects for http-01 (unhitch's acme http-listen). */
  readonly httpPort: number;
  /** Lifetime of issued certificates in seconds (pebble's default is years). */
  readonly validitySec?: number;
}

export interface Pebble {
  readonly directoryUrl: string;
  /** PEM of pebble's HTTPS certificate: give it to unhitch as NODE_EXTRA_CA_CERTS. */
  readonly httpsCaPath: string;
  /** Stop the CA (the DNS stays): a CA outage. */
  stop(): Promise<void>;
  /** Start the CA again on the same address (a new CA: new roots, no accounts). */
  start(): Promise<void>;
}

/** Whether pebble is installed; CI installs it (.ci/run), a local run may not have it. */
export function pebbleMissing(): string | undefined {
  try {
    execFileSync('sh', ['-c', 'command -v pebble && command -v pebble-challtestsrv'], {
      stdio: 'ignore',
    });
    return undefined;
  } catch {
    return 'pebble is not installed (apt-get install pebble); ACME tests need a real CA';
  }
}

/** Skip the test when pebble is missing, except in CI, where that is a failure. */
export function requirePebble(t: TestContext): boolean {
  const missing = pebbleMissing();
  if (missing === undefined) return true;
  if (process.env.CI) throw new Error(missing);
  t.skip(missing);
  return false;
}

function spawnLogged(command: string, args: readonly string[], env: NodeJS.ProcessEnv) {
  const child = spawn(command, args, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const changes = new EventEmitter();
  const onData = (chunk: Buffer): void => {
    output += chunk.toString('utf8');
    changes.emit('output');
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  child.once('exit', () => changes.emit('output'));
  const waitFor = (pattern: RegExp, what: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        if (pattern.test(output)) finish(resolve);
        else if (child.exitCode !== null || child.signalCode !== null)
          finish(() => reject(new Error(`${command} exited before ${what}:\n${output}`)));
      };
      const timer = setTimeout(
        () => finish(() => reject(new Error(`${command}: no ${what} in time:\n${output}`))),
        10_000,
      );
      const finish = (then: () => void): void => {
        clearTimeout(timer);
        changes.off('output', check);
        then();
      };
      changes.on('output', check);
      check();
    });
  return { child, waitFor, output: () => output };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  await exited;
}

export async function startPebble(t: TestContext, options: PebbleOptions): Promise<Pebble> {
  const dir = mkdtempSync(join(tmpdir(), 'unhitch-pebble-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const https = makeSelfSigned({
    dir,
    stem: 'pebble-https',
    commonName: 'pebble',
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
    days: 2,
  });
  const [listenPort, managementPort, dnsPort, dnsManagementPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const configPath = join(dir, 'pebble.json');
  writeFileSync(
    configPath,
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${listenPort}`,
        managementListenAddress: `127.0.0.1:${managementPort}`,
        certificate: https.certPath,
        privateKey: https.keyPath,
        httpPort: options.httpPort,
        tlsPort: options.tlsPort,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
        ...(options.validitySec === undefined
          ? {}
          : { certificateValidityPeriod: options.validitySec }),
      },
    }),
  );
  const dns = spawnLogged(
    'pebble-challtestsrv',
    [
      '-dns01',
      `127.0.0.1:${dnsPort}`,
      '-http01',
      '',
      '-https01',
      '',
      '-tlsalpn01',
      '',
      '-management',
      `127.0.0.1:${dnsManagementPort}`,
      '-defaultIPv4',
      '127.0.0.1',
      '-defaultIPv6',
      '',
    ],
    {},
  );
  t.after(() => stopChild(dns.child));
  await dns.waitFor(/Starting management server/, 'DNS server');
  let ca: ReturnType<typeof spawnLogged> | undefined;
  const start = async (): Promise<void> => {
    ca = spawnLogged('pebble', ['-config', configPath, '-dnsserver', `127.0.0.1:${dnsPort}`], {
      // Validate at once, never reject a nonce at random, never reuse an authorization:
      // fast and deterministic, and every order is validated for real.
      PEBBLE_VA_NOSLEEP: '1',
      PEBBLE_WFE_NONCEREJECT: '0',
      PEBBLE_AUTHZREUSE: '0',
    });
    await ca.waitFor(/Listening on/, 'listener');
  };
  const stop = async (): Promise<void> => {
    if (ca !== undefined) await stopChild(ca.child);
  };
  t.after(stop);
  await start();
  return {
    directoryUrl: `https://127.0.0.1:${listenPort}/dir`,
    httpsCaPath: https.certPath,
    stop,
    start,
  };
}
