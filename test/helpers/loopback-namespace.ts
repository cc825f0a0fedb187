/**
 * Runs a test file again inside a network namespace that has only loopback (`unshare -n`,
 * then `ip link set lo up`). WebRTC gathers host candidates on every interface it finds;
 * in there the only one is `lo`, so no peer traffic can leave 127.0.0.0/8 and ::1, and no
 * port the test binds can clash with another process on the machine.
 *
 * `unshare -n` needs root (CI runs as root). Run locally without it, or without another
 * tool a test needs, the test skips and says why; under CI (`CI` set) it fails instead, so
 * a missing install step in .ci/run cannot pass as a skip.
 */
import { spawn, spawnSync } from 'node:child_process';
import { networkInterfaces } from 'node:os';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';

const MARK = 'UNHITCH_LOOPBACK_NAMESPACE';

/** True in the re-executed copy of the file, inside the namespace. */
export function insideLoopbackNamespace(): boolean {
  return process.env[MARK] === '1';
}

/** Interfaces other than loopback that the process can see (none inside the namespace). */
export function nonLoopbackInterfaces(): string[] {
  return Object.entries(networkInterfaces())
    .filter(([, addresses]) => (addresses ?? []).some((address) => !address.internal))
    .map(([name]) => name);
}

/** Why the namespace cannot be made here, or undefined when it can. */
function namespaceUnavailable(): string | undefined {
  const probe = spawnSync('unshare', ['-n', '--', 'ip', 'link', 'set', 'lo', 'up'], {
    encoding: 'utf8',
  });
  if (probe.error)
    return `cannot run unshare/ip (${probe.error.message}); apt-get install util-linux iproute2`;
  if (probe.status !== 0)
    return `unshare -n failed (it needs root): ${probe.stderr.trim() || `exit ${probe.status}`}`;
  return undefined;
}

/** A command's absence, as a skip reason (undefined when `command --version`-like probe works). */
export function toolMissing(
  command: string,
  args: readonly string[],
  install: string,
): string | undefined {
  const probe = spawnSync(command, args, { encoding: 'utf8', timeout: 30_000 });
  if (probe.error || probe.status !== 0)
    return `${command} is not usable here (${probe.error?.message ?? probe.stderr.trim()}); ${install}`;
  return undefined;
}

/**
 * Skips (locally) or fails (under CI) when `reason` is set; returns true when the caller
 * should stop.
 */
export function skipUnlessAvailable(t: TestContext, reason: string | undefined): boolean {
  if (reason === undefined) return false;
  if (process.env.CI) throw new Error(`required under CI: ${reason}`);
  t.skip(reason);
  return true;
}

/**
 * Runs `fileUrl` (the calling test file) under `node --test` inside a fresh loopback-only
 * namespace and fails `t` unless every test in there passed. The inner run's report is
 * passed on as diagnostics. The inner process group is killed on timeout.
 */
export async function runInLoopbackNamespace(
  t: TestContext,
  fileUrl: string,
  timeoutMs: number,
): Promise<void> {
  if (skipUnlessAvailable(t, namespaceUnavailable())) return;
  const env: NodeJS.ProcessEnv = { ...process.env, [MARK]: '1' };
  // The outer runner's context would make the inner one report in its binary format.
  delete env.NODE_TEST_CONTEXT;
  const child = spawn(
    'unshare',
    [
      '-n',
      '--',
      'sh',
      '-c',
      'ip link set lo up && exec "$@"',
      'sh',
      process.execPath,
      '--test',
      '--test-reporter=spec',
      '--test-concurrency=1',
      // WebRTC's native threads must not keep a finished run alive.
      '--test-force-exit',
      fileURLToPath(fileUrl),
    ],
    { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
  });
  child.stderr.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
  });
  const timer = setTimeout(() => {
    output += `\n(killed after ${timeoutMs} ms)\n`;
    if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
  }, timeoutMs);
  const code = await new Promise<number | null>((resolve) => {
    child.once('close', (exitCode) => resolve(exitCode));
  });
  clearTimeout(timer);
  for (const line of output.split('\n')) if (/^\s*(✔|✖|﹣|ℹ|#)/.test(line)) t.diagnostic(line);
  if (code !== 0)
    throw new Error(`the run inside the loopback namespace failed (exit ${code}):\n${output}`);
}
