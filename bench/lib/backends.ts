/**
 * Tracker backends for compare.ts, each a separate process pinned to the load CPU:
 * `uws` (fast stand-in), `bittorrent-tracker` (the reference), or an external command.
 * `uws` runs on Node 20 when this node is newer (bench/lib/runtimes.ts says why).
 */
import { join } from 'node:path';
import { freePort, waitForPort } from '../../test/kit/ports.js';
import { type BenchProcess, startProcess, untilReady } from './processes.js';
import { REPO_ROOT } from './proxies.js';
import { currentRuntime, noteRuntime, uwsRuntime } from './runtimes.js';

export interface BackendSpec {
  /** Name in tables. */
  readonly name: string;
  /** Built-in script, or an external shell command. */
  readonly kind: 'builtin' | 'external';
  readonly script?: string;
  readonly command?: string;
  /** Fixed port for external commands; built-ins get a free port. */
  readonly port?: number;
  /** Built-ins: arguments after the port (bittorrent-tracker: BACKLOG STALL_MS/EVERY_MS). */
  readonly extraArgs?: readonly string[];
}

export interface RunningBackend {
  readonly name: string;
  readonly port: number;
  readonly process: BenchProcess;
}

const BUILTIN_SCRIPTS: Record<string, string> = {
  uws: join(REPO_ROOT, 'dist', 'bench', 'backends', 'uws-tracker.js'),
  'bittorrent-tracker': join(REPO_ROOT, 'dist', 'bench', 'backends', 'bittorrent-tracker.js'),
};

export function builtinBackend(name: string): BackendSpec {
  const script = BUILTIN_SCRIPTS[name];
  if (!script) {
    throw Object.assign(
      new Error(`unknown backend ${name}; known: ${Object.keys(BUILTIN_SCRIPTS).join(', ')}`),
      { code: 'BENCH_UNKNOWN_BACKEND' },
    );
  }
  return { name, kind: 'builtin', script };
}

export function externalBackend(command: string, port: number): BackendSpec {
  // "node x/aquatic.js …" or "sh run.sh" → the script's name says more than the interpreter's.
  const words = command.split(/\s+/).map((word) => word.split('/').pop() ?? word);
  const interpreters = ['node', 'sh', 'bash', 'env', 'python3'];
  const name = (interpreters.includes(words[0] ?? '') ? words[1] : words[0]) ?? 'external';
  return { name, kind: 'external', command, port };
}

export async function startBackend(
  spec: BackendSpec,
  cpu?: string,
  openFilesLimit?: number,
): Promise<RunningBackend> {
  const port = spec.port ?? (await freePort());
  let node = currentRuntime();
  if (spec.name === 'uws') {
    node = uwsRuntime();
    noteRuntime('the uws backend', node);
  }
  const handle =
    spec.kind === 'builtin'
      ? startProcess({
          name: spec.name,
          command: node.execPath,
          args: [spec.script as string, String(port), ...(spec.extraArgs ?? [])],
          cpu,
          openFilesLimit,
        })
      : startProcess({
          name: spec.name,
          command: 'sh',
          args: ['-c', `exec ${spec.command as string}`],
          cpu,
          openFilesLimit,
        });
  await untilReady(handle, waitForPort(port, 15_000));
  return { name: spec.name, port, process: handle };
}
