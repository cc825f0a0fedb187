/**
 * The `unhitch` command: Hitch's flags in, a clustered proxy out. Loaded by the entry
 * modules (bin.ts, cli.ts) once the runtime check passed; it runs on import.
 * Only this file and cluster/ know about processes; everything else is a library.
 */
import { isAbsolute, resolve } from 'node:path';
import { DaemonReporter, isDaemonChild, launchDaemon } from './cluster/daemon.js';
import { runPrimary } from './cluster/primary.js';
import { reloadCommand } from './cluster/reload-status.js';
import { type CliAction, parseCommandLine } from './config/load.js';
import type { ProxyConfig } from './config/model.js';
import { unsupportedSettings } from './config/unsupported.js';
import { exitStatusFor, logCode } from './errors.js';
import { createLogger } from './ops/log.js';
import { preflight } from './ops/preflight.js';

type RunAction = Extract<CliAction, { kind: 'run' }>;

export async function main(argv: readonly string[]): Promise<number> {
  const reporter = isDaemonChild() ? new DaemonReporter() : undefined;
  let action: CliAction;
  try {
    action = parseCommandLine(argv);
  } catch (err) {
    return await reportStartupError(err, reporter);
  }
  switch (action.kind) {
    case 'version':
      process.stdout.write(`${action.text}\n`);
      return 0;
    case 'help':
      process.stdout.write(action.text);
      return action.status;
    case 'test':
      return await checkConfig(action);
    case 'reload':
      try {
        return await reloadCommand(action.pidfile);
      } catch (err) {
        return await reportStartupError(err, undefined);
      }
    case 'run':
      if (action.config.daemon && reporter === undefined) {
        return await launchDaemon(
          argv,
          daemonNotices(action.config, action.configPath),
          action.config.logFormat,
        );
      }
      try {
        await run(action, argv, reporter);
      } catch (err) {
        return await reportStartupError(err, reporter);
      }
      return 0;
  }
}

/** What Hitch says when a daemon has nowhere to log (hitch.c). */
function daemonNotices(config: ProxyConfig, configPath: string | undefined): string[] {
  const notices: string[] = [];
  if (!config.syslog && config.logFilename === undefined) {
    notices.push(
      "warning: daemonizing with neither 'syslog' nor 'log-filename' configured: unhitch will not produce log messages",
    );
  }
  // Hitch's trap, kept (the daemon works in "/"), but said out loud.
  const relative = relativeDaemonPaths(config, configPath);
  if (relative.length > 0) {
    notices.push(
      `warning: the daemon works in "/": ${relative.join(', ')} will be read or written from "/" (pidfile, dbg-listen, and every file read on a SIGHUP reload); use absolute paths`,
    );
  }
  return notices;
}

/** Paths a daemon resolves from "/" after it detached, given relative. */
function relativeDaemonPaths(config: ProxyConfig, configPath: string | undefined): string[] {
  const paths = [
    configPath,
    config.pidfile,
    config.dbgListen,
    config.logFilename,
    config.pemDir,
    ...[...config.pemFiles, ...config.frontends.flatMap((frontend) => frontend.pemFiles)].flatMap(
      (pem) => [pem.certPath, pem.privateKeyPath, pem.ocspResponsePath],
    ),
  ];
  return [...new Set(paths)].filter(
    (path): path is string => path !== undefined && !isAbsolute(path),
  );
}

async function run(
  action: RunAction,
  argv: readonly string[],
  reporter: DaemonReporter | undefined,
): Promise<void> {
  const { warnings } = action;
  // Hitch opens its log file before it chdirs to "/"; the workers, forked after that
  // chdir, open it again themselves, so they get the name resolved from where it started.
  const checked = await preflight(
    reporter !== undefined && action.config.logFilename !== undefined
      ? { ...action.config, logFilename: resolve(action.config.logFilename) }
      : action.config,
    { isRoot: process.getuid?.() === 0, mode: 'start' },
  );
  const config = checked.config;
  const logger = createLogger({
    level: config.logLevel,
    quiet: config.quiet,
    filename: config.logFilename,
    format: config.logFormat,
    bindings: { role: 'primary' },
    ...(config.syslog ? { syslog: { facility: config.syslogFacility } } : {}),
    console: reporter === undefined,
    extraStreams: reporter ? [reporter.stream] : [],
  });
  for (const warning of warnings) logCode(logger, warning.code, {}, warning.message);
  // Identity and unsupported-setting warnings come from the primary's services.
  for (const warning of checked.certificateWarnings)
    logCode(logger, 'UNHITCH_CERTIFICATE_WARNING', {}, warning);
  // Hitch's daemonize(): chdir("/") after the config, certificates and log file are
  // open, before the pidfile is written and the workers start.
  if (reporter !== undefined) process.chdir('/');
  await runPrimary({
    argv,
    config,
    logger,
    certificates: checked.certificates,
    onReady: () => reporter?.ready(),
  });
}

/**
 * `--test`: everything the start checks short of binding (ops/preflight.ts), then exit.
 * Hitch prints its verdict on stderr; so do we.
 */
async function checkConfig(action: Extract<CliAction, { kind: 'test' }>): Promise<number> {
  process.stderr.write('Trying to initialize SSL contexts with your certificates\n');
  for (const warning of action.warnings) process.stderr.write(`warning: ${warning.message}\n`);
  for (const setting of unsupportedSettings(action.config)) {
    process.stderr.write(`warning: ${setting.message}\n`);
  }
  try {
    const checked = await preflight(action.config, {
      isRoot: process.getuid?.() === 0,
      mode: 'test',
    });
    for (const warning of [...checked.identityWarnings, ...checked.certificateWarnings])
      process.stderr.write(`warning: ${warning}\n`);
    process.stderr.write(
      `unhitch configuration looks ok (${action.config.frontends.length} frontend(s), ${checked.certificates.length} certificate(s)).\n`,
    );
    return 0;
  } catch (err) {
    return await reportStartupError(err, undefined);
  }
}

/**
 * One line with the code (on stderr, or to a daemon's launcher), and the registry's exit
 * status for it.
 */
async function reportStartupError(
  err: unknown,
  reporter: DaemonReporter | undefined,
): Promise<number> {
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : String(err);
  const text = `unhitch: ${message}${typeof code === 'string' ? ` [${code}]` : ''}`;
  if (reporter !== undefined) await reporter.failed(text);
  else process.stderr.write(`${text}\n`);
  return exitStatusFor(err);
}

main(process.argv.slice(2)).then(
  (status) => {
    if (status !== 0) process.exitCode = status;
  },
  (err: unknown) => {
    process.exitCode = exitStatusFor(err);
    process.stderr.write(`unhitch: ${err instanceof Error ? err.message : String(err)}\n`);
  },
);
