/**
 * Hitch's `--dbg-listen=FILE`: once the workers listen, and again after every reload,
 * the file lists each listening socket as `ip:port`, one a line, in frontend order. Its
 * own tooling (and scripts written for it) read it to find a port chosen by the kernel
 * (`:0`) or to wait for a reload to take effect, often by line number.
 *
 * As Hitch's listen_endpoint_print: IPv4 sockets only (`AF_INET`), every other family
 * skipped, so the Nth line is the Nth IPv4 listener; a wildcard frontend (`[*]:443`, one
 * dual-stack socket here) is its IPv4 side, `0.0.0.0:443`. One deliberate difference:
 * the port is the bound one, where Hitch 1.7 writes the configured `:0`.
 */
import { randomBytes } from 'node:crypto';
import { renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { TcpAddress } from '../config/model.js';
import { logCode } from '../errors.js';

/** Lines for one set of listening addresses (IPv4 only, deduplicated, first seen first). */
export function listenLines(addresses: readonly TcpAddress[]): string[] {
  const lines: string[] = [];
  for (const address of addresses) {
    const host = address.host ?? '::';
    // AF_INET6 sockets are not listed (Hitch skips every family but AF_INET).
    if (host !== '::' && host.includes(':')) continue;
    const line = `${host === '::' ? '0.0.0.0' : host}:${address.port}`;
    if (!lines.includes(line)) lines.push(line);
  }
  return lines;
}

/**
 * Frontend order across workers: worker 0's addresses, then any other worker's that
 * differ (per-worker sockets on port 0 each have their own port).
 */
export function generationAddresses(
  listening: ReadonlyMap<number, readonly TcpAddress[]>,
): TcpAddress[] {
  return [...listening.entries()].sort(([a], [b]) => a - b).flatMap(([, addresses]) => addresses);
}

/** Replace the file in one step: a reader sees the old list or the new one, never half. */
export function writeListenFile(path: string, lines: readonly string[]): void {
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    writeFileSync(temp, lines.map((line) => `${line}\n`).join(''), { mode: 0o644 });
    renameSync(temp, path);
  } catch (error) {
    try {
      unlinkSync(temp);
    } catch {
      // Never written: nothing to remove.
    }
    throw error;
  }
}

/**
 * The startup (and reload) report: one log line with every listening address, and the
 * dbg-listen file when configured. A file that cannot be written is logged, not fatal:
 * the proxy itself is serving.
 */
export function announceListening(
  generation: {
    readonly config: { readonly dbgListen: string | undefined };
    readonly listening: ReadonlyMap<number, readonly TcpAddress[]>;
  },
  logger: Logger,
): void {
  const lines = listenLines(generationAddresses(generation.listening));
  logger.info({ listening: lines }, 'listening');
  const path = generation.config.dbgListen;
  if (path === undefined) return;
  try {
    writeListenFile(path, lines);
  } catch (error) {
    logCode(
      logger,
      'UNHITCH_DBG_LISTEN',
      { file: path, err: error },
      'cannot write the dbg-listen file',
    );
  }
}
