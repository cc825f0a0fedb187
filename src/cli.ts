#!/usr/bin/env node
/**
 * The `unhitch` command: Hitch's flags in, a clustered proxy out.
 * Only this file and cluster/ know about processes; everything else is a library.
 */
import { runPrimary } from './cluster/primary.js';
import { type CliAction, parseCommandLine } from './config/load.js';
import { unsupportedSettings } from './config/unsupported.js';
import { exitStatusFor, logCode } from './errors.js';
import { createLogger } from './ops/log.js';
import { checkIdentity } from './ops/privileges.js';
import { loadCertificates } from './tls/material.js';

export async function main(argv: readonly string[]): Promise<number> {
  let action: CliAction;
  try {
    action = parseCommandLine(argv);
  } catch (err) {
    return reportStartupError(err);
  }
  switch (action.kind) {
    case 'version':
      process.stdout.write(`${action.text}\n`);
      return 0;
    case 'help':
      process.stdout.write(action.text);
      return 0;
    case 'test':
      return checkConfig(action);
    case 'run': {
      const { config, warnings } = action;
      const logger = createLogger({
        level: config.logLevel,
        quiet: config.quiet,
        filename: config.logFilename,
        bindings: { role: 'primary' },
      });
      for (const warning of warnings) logCode(logger, warning.code, {}, warning.message);
      await runPrimary({ argv, config, logger });
      return 0;
    }
  }
}

/** `--test`: parse, load every certificate (key/cert pairing included), report, exit. */
function checkConfig(action: Extract<CliAction, { kind: 'test' }>): number {
  for (const warning of action.warnings) process.stderr.write(`warning: ${warning.message}\n`);
  for (const setting of unsupportedSettings(action.config)) {
    process.stderr.write(`warning: ${setting.message}\n`);
  }
  // A missing user is a warning here even as root: the file is fine, this host is not
  // ready for it yet (running it as root would refuse to start).
  try {
    const identity = checkIdentity(action.config, { isRoot: process.getuid?.() === 0 });
    for (const warning of identity.warnings) process.stderr.write(`warning: ${warning}\n`);
  } catch (err) {
    process.stderr.write(`warning: ${(err as Error).message}\n`);
  }
  try {
    const certificates = loadCertificates(action.config, (message) =>
      process.stderr.write(`warning: ${message}\n`),
    );
    process.stdout.write(
      `Configuration looks ok (${action.config.frontends.length} frontend(s), ${certificates.length} certificate(s)).\n`,
    );
    return 0;
  } catch (err) {
    return reportStartupError(err);
  }
}

/** One line on stderr with the code, and the registry's exit status for it. */
function reportStartupError(err: unknown): number {
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`unhitch: ${message}${typeof code === 'string' ? ` [${code}]` : ''}\n`);
  return exitStatusFor(err);
}

main(process.argv.slice(2)).then(
  (status) => {
    if (status !== 0) process.exitCode = status;
  },
  (err: unknown) => {
    process.exitCode = reportStartupError(err);
  },
);
