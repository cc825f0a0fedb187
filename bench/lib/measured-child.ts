/**
 * Runs a client process that prints JSON event lines (`measure_start`, `measure_end`,
 * `result`, optionally `holding`) and samples a proxy's process tree at those instants.
 */
import { treeCpuMicros, treeRssKiB } from '../../test/kit/proc.js';
import { OtherLoadWindow } from './cpu-set.js';
import { type BenchProcess, type StartOptions, startProcess } from './processes.js';

export interface ChildMeasurement<Result> {
  readonly result: Result;
  /** Proxy tree CPU between measure_start and measure_end, µs (null without a proxy). */
  readonly proxyCpuMicros: number | null;
  /** Proxy tree RSS at measure_end (or at `holding`), KiB. */
  readonly proxyRssKiB: number | null;
  /** Busy share of the proxy's CPUs NOT spent in the proxy tree during the window, %. */
  readonly otherLoadOnProxyCpuPercent: number | null;
}

export interface MeasuredChildOptions extends Omit<StartOptions, 'onStdoutLine'> {
  readonly proxyPid: number | null;
  /** The proxy's CPUs, to report other processes' load on them (null: not pinned). */
  readonly proxyCpus?: readonly number[] | null;
  /** Called on a `holding` event; resolves when the client may be told to finish. */
  readonly onHolding?: (child: BenchProcess, event: Record<string, unknown>) => Promise<void>;
  /** Progress lines from the child's stderr are echoed with this prefix. */
  readonly echoPrefix?: string;
}

export function runMeasuredChild<Result>(
  options: MeasuredChildOptions,
): Promise<ChildMeasurement<Result>> {
  const pid = options.proxyPid;
  let cpuAtStart: number | null = null;
  let cpuAtEnd: number | null = null;
  let rss: number | null = null;
  let result: Result | null = null;
  let holdingDone: Promise<void> = Promise.resolve();
  const otherLoad = new OtherLoadWindow(options.proxyCpus ?? null);
  return new Promise((resolve, reject) => {
    const child: BenchProcess = startProcess({
      ...options,
      onStdoutLine: (line) => {
        if (!line.startsWith('{')) return;
        let event: Record<string, unknown>;
        try {
          event = JSON.parse(line) as Record<string, unknown>;
        } catch {
          return;
        }
        if (event.event === 'measure_start') {
          otherLoad.start();
          if (pid !== null) cpuAtStart = treeCpuMicros(pid);
        }
        if (event.event === 'measure_end') otherLoad.end();
        if (event.event === 'measure_end' && pid !== null) {
          cpuAtEnd = treeCpuMicros(pid);
          rss = treeRssKiB(pid);
        }
        if (event.event === 'holding') {
          if (pid !== null) rss = treeRssKiB(pid);
          holdingDone = options.onHolding?.(child, event) ?? Promise.resolve();
        }
        if (event.event === 'result') result = event.result as Result;
      },
    });
    if (options.echoPrefix !== undefined) {
      child.child.stderr?.on('data', (chunk: Buffer) => {
        for (const line of chunk.toString().trim().split('\n')) {
          if (line) process.stderr.write(`${options.echoPrefix}${line}\n`);
        }
      });
    }
    void child.exited.then(async (status) => {
      await holdingDone;
      if (result === null) {
        reject(
          Object.assign(
            new Error(`${options.name} exited (${status}) without a result: ${child.stderrTail()}`),
            {
              code: 'BENCH_CLIENT_FAILED',
            },
          ),
        );
        return;
      }
      const proxyCpuMicros =
        cpuAtStart !== null && cpuAtEnd !== null ? cpuAtEnd - cpuAtStart : null;
      resolve({
        result,
        proxyCpuMicros,
        proxyRssKiB: rss,
        otherLoadOnProxyCpuPercent: otherLoad.percent(proxyCpuMicros),
      });
    });
  });
}
