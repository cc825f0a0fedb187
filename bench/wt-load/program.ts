/**
 * wt-load: a WebTorrent tracker load generator equivalent to aquatic_ws_load_test.
 *   node dist/bench/wt-load/main.js --config=bench/wt-load/load.toml [--url=wss://127.0.0.1:8443] [--duration=15]
 * Prints a progress line per second, then a JSON result line and a summary table.
 * With --events, phase changes are also printed as JSON lines (for compare.ts).
 */
import { configFromArgs, LoadConfigError } from './config.js';
import { formatLoadResult, runLoad } from './run.js';

async function main(): Promise<number> {
  let config: ReturnType<typeof configFromArgs>;
  try {
    config = configFromArgs(process.argv.slice(2));
  } catch (err) {
    if (err instanceof LoadConfigError) {
      process.stderr.write(`wt-load: ${err.message} [${err.code}]\n`);
      return 2;
    }
    throw err;
  }
  const result = await runLoad(config, {
    onEvent: (event) => {
      if (event.event === 'progress') process.stderr.write(`${event.line}\n`);
      else if (config.events) process.stdout.write(`${JSON.stringify(event)}\n`);
      else process.stderr.write(`${JSON.stringify(event)}\n`);
    },
  });
  process.stdout.write(`${JSON.stringify({ event: 'result', result })}\n`);
  process.stderr.write(`${formatLoadResult(result)}\n`);
  return 0;
}

main().then(
  (status) => process.exit(status),
  (err: unknown) => {
    process.stderr.write(`wt-load: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
