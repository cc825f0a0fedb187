/**
 * The skeleton every proxy bench shares, so a script only describes its run: flags (the
 * common --proxies, --quick, --proxy-cpu, --load-cpu, --repeat, and the results flags below),
 * a work directory with a self-signed certificate, backends pinned to the load CPU, the
 * measured window's proxy CPU, whether other processes made the run unreliable, the table on
 * stdout and the script's RESULTS.md section. Child processes are stopped on every exit path
 * (installCleanup); the exit status is 0, or 1 with "<name>: <message>" on stderr.
 *
 * Where results go: by default into an untracked directory (bench/out/, or --out=DIR) that
 * mirrors bench/ (RESULTS.md, results/), so running a bench never changes a tracked file;
 * --update-results writes bench/RESULTS.md and bench/results/ and regenerates README's cost
 * table (what `npm run docs:bench` does); --no-write writes nothing.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { makeCertificate } from '../../test/kit/pki.js';
import { freePort, waitForPort } from '../../test/kit/ports.js';
import { treeCpuMicros } from '../../test/kit/proc.js';
import { type Flags, listFlag, numberFlag, parseFlags } from './cli-args.js';
import { OtherLoadWindow, parseCpuList } from './cpu-set.js';
import { installCleanup, isShuttingDown, startProcess, untilReady } from './processes.js';
import { type ProxyName, parseProxyList, REPO_ROOT } from './proxies.js';
import { Reliability } from './reliability.js';
import { formatResultsSection, type ResultsSection, updateResultsFile } from './results-file.js';
import { runtimeLines } from './runtimes.js';

/** Flags every harness script takes on top of its own. */
const RESULTS_FLAGS = ['no-write', 'update-results', 'out'] as const;

export interface ResultsDestination {
  /** The RESULTS.md whose section the script replaces. */
  readonly resultsMd: string;
  /** Where the script's other result files go (compare.svg, testssl.md). */
  readonly filesDirectory: string;
  /** The tracked files: README's cost table is regenerated after them. */
  readonly tracked: boolean;
}

/** Where a run's results go (null: nowhere, --no-write). */
export function resultsDestination(
  flags: Flags,
  repoRoot: string = REPO_ROOT,
): ResultsDestination | null {
  const chosen = RESULTS_FLAGS.filter((flag) => flags.has(flag));
  if (chosen.length > 1) {
    throw Object.assign(new Error(`--${chosen.join(' and --')} exclude each other`), {
      code: 'BENCH_BAD_ARGUMENT',
    });
  }
  if (flags.has('no-write')) return null;
  if (flags.has('update-results')) {
    const bench = join(repoRoot, 'bench');
    return {
      resultsMd: join(bench, 'RESULTS.md'),
      filesDirectory: join(bench, 'results'),
      tracked: true,
    };
  }
  const out = resolve(flags.get('out') ?? join(repoRoot, 'bench', 'out'));
  return {
    resultsMd: join(out, 'RESULTS.md'),
    filesDirectory: join(out, 'results'),
    tracked: false,
  };
}

export interface BenchCertificate {
  readonly keyPath: string;
  readonly certPath: string;
  /** key + certificate in one file, as Hitch and HAProxy want it. */
  readonly combinedPemPath: string;
}

export interface BenchContext {
  readonly flags: Flags;
  readonly quick: boolean;
  /** --proxy-cpu (default 1): where the proxy runs. */
  readonly proxyCpu: string;
  /** --load-cpu (default 0): load generator and backend. */
  readonly loadCpu: string;
  /** The CPUs of --proxy-cpu (for the other-load figure); null when it is not a CPU list. */
  readonly proxyCpus: readonly number[] | null;
  /** --proxies, or the script's default list. */
  readonly proxies: ProxyName[];
  /** --repeat (default 1, at least 1). */
  readonly repeat: number;
  /** Removed when the script ends. */
  readonly workDirectory: string;
  /** What could not run, and why: listed in the RESULTS.md section. */
  readonly skipped: string[];
  /** A self-signed certificate in the work directory, made on first use. */
  certificate(): BenchCertificate;
  /** Records each run's other load on the proxy CPU; marks rows and withholds ratio lines. */
  readonly reliability: Reliability;
  /** `node dist/bench/backends/<script>.js PORT` on the load CPU, once it listens. */
  startBackend(script: string): Promise<NodeBackend>;
}

export interface NodeBackend {
  readonly port: number;
  stop(): Promise<void>;
}

export interface BenchReport {
  /** Printed to stdout after a blank line: the table and what follows it. */
  readonly stdout: string;
  /**
   * The RESULTS.md section, written unless --no-write or the run was interrupted; or, for a
   * report with a layout of its own, the section's text as it is.
   */
  readonly results: Omit<ResultsSection, 'skipped'> | string;
  /** The section's marker name when it is not the script's name (one script, two sections). */
  readonly section?: string;
  /**
   * Writes the script's other result files (a chart) into `directory`, after the section and
   * on the same terms; returns the paths written.
   */
  readonly writeFiles?: (directory: string) => string[];
  /** Printed to stdout after the runtime lines and a blank line: the run's verdict. */
  readonly verdict?: string;
  /** The script's exit status when the run itself failed its check (default 0). */
  readonly exitStatus?: number;
}

export interface BenchSpec {
  /** Names the RESULTS.md section, the work directory and error messages. */
  readonly name: string;
  /** Every flag the script accepts, in the order its usage error lists them. */
  readonly flags: readonly string[];
  readonly defaultProxies: readonly ProxyName[];
  /** Appends an error's code to the failure message ("<name>: <message> [<code>]"). */
  readonly showErrorCode?: boolean;
  run(bench: BenchContext): Promise<BenchReport>;
}

/** Runs a bench script to its exit. */
export function runBench(spec: BenchSpec): void {
  main(spec).then(
    (status) => process.exit(status),
    (err: unknown) => {
      const code = (err as { code?: unknown }).code;
      const suffix = spec.showErrorCode && typeof code === 'string' ? ` [${code}]` : '';
      process.stderr.write(`${spec.name}: ${(err as Error).message}${suffix}\n`);
      process.exit(1);
    },
  );
}

async function main(spec: BenchSpec): Promise<number> {
  installCleanup();
  const flags = parseFlags(process.argv.slice(2), [
    ...spec.flags,
    ...RESULTS_FLAGS.filter((flag) => !spec.flags.includes(flag)),
  ]);
  const destination = resultsDestination(flags);
  const reliability = new Reliability();
  const proxyCpu = flags.get('proxy-cpu') ?? '1';
  let certificate: BenchCertificate | undefined;
  const workDirectory = mkdtempSync(join(tmpdir(), `unhitch-${spec.name}-`));
  try {
    const bench: BenchContext = {
      flags,
      quick: flags.has('quick'),
      proxyCpu,
      loadCpu: flags.get('load-cpu') ?? '0',
      proxyCpus: parseCpuList(proxyCpu),
      proxies: parseProxyList(listFlag(flags, 'proxies', spec.defaultProxies).join(',')),
      repeat: Math.max(1, Math.floor(numberFlag(flags, 'repeat', 1))),
      workDirectory,
      skipped: [],
      reliability,
      certificate: () => {
        if (certificate === undefined) {
          const made = makeCertificate('bench', ['localhost'], workDirectory);
          certificate = {
            keyPath: made.keyPath,
            certPath: made.certPath,
            combinedPemPath: made.combinedPath,
          };
        }
        return certificate;
      },
      startBackend: async (script) => {
        const port = await freePort();
        const backend = startProcess({
          name: script,
          command: process.execPath,
          args: [join(REPO_ROOT, 'dist', 'bench', 'backends', `${script}.js`), String(port)],
          cpu: flags.get('load-cpu') ?? '0',
        });
        await untilReady(backend, waitForPort(port));
        return { port, stop: () => backend.stop() };
      },
    };
    const report = await spec.run(bench);
    process.stdout.write(`\n${report.stdout}\n\n${runtimeLines().join('\n')}\n`);
    if (report.verdict !== undefined) process.stdout.write(`\n${report.verdict}\n`);
    const unreliable = reliability.summary();
    if (unreliable !== null) process.stderr.write(`${spec.name}: ${unreliable}\n`);
    if (destination !== null && !isShuttingDown()) {
      const written = writeResults(destination, spec.name, report, bench.skipped, unreliable);
      process.stderr.write(`${spec.name}: wrote ${written.map(shownPath).join(', ')}\n`);
    }
    return report.exitStatus ?? 0;
  } finally {
    rmSync(workDirectory, { recursive: true, force: true });
  }
}

function shownPath(path: string): string {
  const inRepo = relative(REPO_ROOT, path);
  return inRepo.startsWith('..') ? path : inRepo;
}

/** The section, the script's files, and (tracked only) the cost tables of README and docs/benchmarks.md; the paths written. */
function writeResults(
  destination: ResultsDestination,
  name: string,
  report: BenchReport,
  skipped: readonly string[],
  unreliable: string | null,
): string[] {
  const { resultsMd, filesDirectory } = destination;
  mkdirSync(filesDirectory, { recursive: true });
  // The untracked copy starts as the tracked one, so it reads as a whole (links, other sections).
  const trackedMd = join(REPO_ROOT, 'bench', 'RESULTS.md');
  if (!existsSync(resultsMd) && existsSync(trackedMd)) copyFileSync(trackedMd, resultsMd);
  const section =
    typeof report.results === 'string'
      ? report.results
      : formatResultsSection({
          ...report.results,
          notes: [...report.results.notes, ...(unreliable === null ? [] : [`- ${unreliable}`])],
          skipped,
        });
  updateResultsFile(resultsMd, report.section ?? name, section);
  const written = [resultsMd, ...(report.writeFiles?.(filesDirectory) ?? [])];
  if (destination.tracked) {
    // `npm run docs:bench` without its build step: this script runs from the built tree.
    execFileSync(process.execPath, [join(REPO_ROOT, 'dist', 'docs', 'generate', 'cost-table.js')], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    written.push(join(REPO_ROOT, 'README.md'), join(REPO_ROOT, 'docs', 'benchmarks.md'));
  }
  return written;
}

export interface WindowMeasurement<Result> {
  readonly result: Result;
  /** CPU of the proxy's process tree during the window, µs (null without a proxy). */
  readonly proxyCpuMicros: number | null;
  /** Busy share of the proxy's CPUs not spent in the proxy during the window, %. */
  readonly otherLoadOnProxyCpuPercent: number | null;
}

/** Runs `work` as the measured window, sampling the proxy tree and its CPU around it. */
export async function measureWindow<Result>(
  proxyPid: number | null,
  proxyCpus: readonly number[] | null,
  work: () => Promise<Result>,
): Promise<WindowMeasurement<Result>> {
  const cpuBefore = proxyPid === null ? null : treeCpuMicros(proxyPid);
  const otherLoad = new OtherLoadWindow(proxyCpus);
  otherLoad.start();
  const result = await work();
  const proxyCpuMicros =
    proxyPid === null || cpuBefore === null ? null : treeCpuMicros(proxyPid) - cpuBefore;
  otherLoad.end();
  return { result, proxyCpuMicros, otherLoadOnProxyCpuPercent: otherLoad.percent(proxyCpuMicros) };
}
