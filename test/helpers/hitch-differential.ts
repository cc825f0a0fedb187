/**
 * One scenario, run against the installed `hitch` and `unhitch`, both observations
 * returned side by side: a differential test states only the scenario and what must be
 * equal. Hitch runs in the foreground with a pidfile and `--dbg-listen`, workers as
 * nobody (it refuses root workers), and is stopped by its PID, as its own test-suite
 * scripts drive it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import { accessSync, constants, existsSync, readFileSync, rmSync } from 'node:fs';
import { eventually } from '../kit/eventually.js';
import { CLI, type RunResult, runToExit } from '../kit/unhitch-process.js';

export const IMPLEMENTATIONS = ['hitch', 'unhitch'] as const;
export type Implementation = (typeof IMPLEMENTATIONS)[number];
export type Both<T> = Readonly<Record<Implementation, T>>;

export const HITCH_CANDIDATES = ['/usr/sbin/hitch', '/usr/local/sbin/hitch', '/usr/bin/hitch'];

/** The hitch binary, or undefined when Hitch is not installed (the test then skips). */
export function hitchBinary(): string | undefined {
  return HITCH_CANDIDATES.find((path) => {
    try {
      accessSync(path, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** Command and arguments for one implementation; unhitch gets the same flags. */
function commandFor(impl: Implementation, args: readonly string[]): [string, string[]] {
  if (impl === 'hitch') return [hitchBinary() ?? 'hitch', [...args]];
  return [process.execPath, [CLI, ...args]];
}

/** Run both to their exit, concurrently, with the same arguments (or per implementation). */
export async function runBoth(
  args: readonly string[] | ((impl: Implementation) => readonly string[]),
  options: { readonly cwd?: string; readonly timeoutMs?: number } = {},
): Promise<Both<RunResult>> {
  const argsFor = typeof args === 'function' ? args : () => args;
  const [hitch, unhitch] = await Promise.all(
    IMPLEMENTATIONS.map((impl) => {
      const [command, commandArgs] = commandFor(impl, argsFor(impl));
      return runToExit(command, commandArgs, { timeoutMs: 30_000, ...options });
    }),
  );
  return { hitch: hitch as RunResult, unhitch: unhitch as RunResult };
}

/**
 * The first stderr line that carries a verdict: Hitch's and unhitch's progress chatter
 * ("Trying to initialize…", "{core} Note…", warnings) skipped, a log line's timestamp
 * and pid stripped (Hitch pads the pid to five columns: `[ 1471]`). '' when there is none (Hitch then wrote the reason to its log file).
 */
export function verdictLine(stderr: string): string {
  for (const raw of stderr.split('\n')) {
    const line = raw.replace(/^\d{8}T\d{6}\.\d+ \[ *\d+\] /, '').trim();
    if (line === '' || /^Trying to initialize SSL contexts/.test(line)) continue;
    if (/^\{core\} (Note|Using DH|DH init|ECDH Init|hitch \S+ starting|Loading)/.test(line))
      continue;
    if (/^warning:/i.test(line)) continue;
    return line;
  }
  return '';
}

/** What a verdict line means, in words both implementations' lines map onto. */
const MEANINGS: ReadonlyArray<readonly [string, RegExp]> = [
  ['ok', /configuration looks ok/],
  ['pem-missing', /(stat|read) x509 certificate PEM file/i],
  ['pem-not-pem', /no start line|holds no PEM certificate|Error loading certificate file/],
  ['key-mismatch', /key values mismatch|private key does not match/],
  ['ciphers', /no cipher match/],
  ['curve', /ecdh curve/i],
  ['protocols-conflict', /illegal to specify/i],
  ['duplicate-frontend', /redundant frontend/i],
  ['user-unknown', /Invalid user|user \S+ does not exist/],
  // Hitch's grammar cannot tell an unknown option from bad syntax.
  ['parse', /Parsing error|syntax error|unexpected|unknown option/i],
  ['log-file', /open log file|write log file/i],
  ['pidfile', /pidfile/i],
  ['alpn', /alpn-protos/],
  ['bind', /\{bind-socket\}: Address already in use/],
  ['backend', /\{getaddrinfo-backend\}|Invalid parameter 'backend'/],
  ['root-workers', /Refusing to run workers as root/],
];

export function meaningOf(line: string): string {
  if (line === '') return 'silent';
  return MEANINGS.find(([, pattern]) => pattern.test(line))?.[0] ?? `unclassified: ${line}`;
}

export interface Served {
  readonly impl: Implementation;
  readonly child: ChildProcess;
  readonly configPath: string;
  /** The dbg-listen file's lines once it is written. */
  readonly listenLines: readonly string[];
  readonly listenFileText: string;
  output(): string;
  /** Resolves once the output after `from` matches (rejects after `timeoutMs`). */
  waitForOutput(pattern: RegExp, from: number, timeoutMs?: number): Promise<void>;
  /** SIGTERM by PID, then wait for the exit (SIGKILL after the grace). */
  stop(): Promise<void>;
}

export interface ServeOptions {
  readonly configPath: string;
  readonly dbgListen: string;
  readonly pidfile: string;
  /** Extra flags for this implementation only. */
  readonly extraArgs?: readonly string[];
  readonly timeoutMs?: number;
}

/**
 * Start one in the foreground with `--dbg-listen` and a pidfile; ready when the listen
 * file is written (Hitch: its sockets are bound; unhitch: every worker listens).
 */
export async function serve(impl: Implementation, options: ServeOptions): Promise<Served> {
  const args = [
    `--config=${options.configPath}`,
    `--dbg-listen=${options.dbgListen}`,
    `--pidfile=${options.pidfile}`,
    ...(options.extraArgs ?? []),
  ];
  // A file left by an earlier run would read as ready.
  rmSync(options.dbgListen, { force: true });
  const [command, commandArgs] = commandFor(impl, args);
  const child = spawn(command, commandArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const grew = new EventEmitter();
  const collect = (chunk: Buffer): void => {
    output += chunk.toString('utf8');
    grew.emit('data');
  };
  const waitForOutput = (pattern: RegExp, from: number, timeoutMs = 20_000): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        if (!pattern.test(output.slice(from))) return;
        clearTimeout(timer);
        grew.off('data', check);
        resolve();
      };
      const timer = setTimeout(() => {
        grew.off('data', check);
        reject(new Error(`${impl}: no ${pattern} in its output within ${timeoutMs} ms`));
      }, timeoutMs);
      grew.on('data', check);
      check();
    });
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = once(child, 'exit');
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };
  try {
    const text = await eventually(
      () => {
        if (child.exitCode !== null) throw new Error(`${impl} exited: ${output}`);
        if (!existsSync(options.dbgListen)) return undefined;
        const content = readFileSync(options.dbgListen, 'utf8');
        return content.endsWith('\n') ? content : undefined;
      },
      options.timeoutMs ?? 30_000,
      `${impl}'s dbg-listen file`,
    );
    // Hitch writes the file once bound, before it installs its signal handlers and
    // forks: a SIGHUP before "initialization complete" would find it still starting.
    if (impl === 'hitch') await waitForOutput(/initialization complete/, 0, options.timeoutMs);
    return {
      impl,
      child,
      configPath: options.configPath,
      listenFileText: text,
      listenLines: text.split('\n').filter(Boolean),
      output: () => output,
      waitForOutput,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Start both with their own config, probe each, stop both; the two observations. */
export async function observeBoth<T>(
  optionsFor: (impl: Implementation) => ServeOptions,
  probe: (served: Served) => Promise<T>,
): Promise<Both<T>> {
  const observed: Partial<Record<Implementation, T>> = {};
  for (const impl of IMPLEMENTATIONS) {
    const served = await serve(impl, optionsFor(impl));
    try {
      observed[impl] = await probe(served);
    } finally {
      await served.stop();
    }
  }
  return observed as Both<T>;
}
