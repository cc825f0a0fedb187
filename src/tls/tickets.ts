/**
 * TLS session ticket keys. node's server.setTicketKeys() takes one 48-byte Buffer
 * (16-byte key name, 16-byte HMAC secret, 16-byte AES key — the same layout as nginx's
 * ssl_session_ticket_key file), so every worker and every machine that loads the same
 * file can resume each other's sessions.
 *
 * Accepted file formats:
 *  - exactly 48 raw bytes (nginx's format; what saveTicketKeyFile writes);
 *  - text whose first non-empty, non-'#' line is the 48 bytes in hex (96 digits) or
 *    base64 (64 characters, padding optional).
 * A 48-byte file is always raw: 48 bytes of text cannot encode 48 bytes in hex/base64.
 */

import { randomBytes } from 'node:crypto';
import {
  closeSync,
  fchmodSync,
  fsyncSync,
  linkSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { UnhitchError } from '../errors.js';

export const TICKET_KEY_BYTES = 48;
const TICKET_KEY_FILE_MODE = 0o600;
/** Group or world permission bits: anyone but the owner could read (or replace) the key. */
const NON_OWNER_MODE_BITS = 0o077;

export type TicketKeyErrorCode =
  | 'UNHITCH_TICKET_KEY_FILE'
  | 'UNHITCH_TICKET_KEY_FORMAT'
  | 'UNHITCH_TICKET_KEY_LENGTH';

export class TicketKeyError extends UnhitchError<TicketKeyErrorCode> {
  readonly path: string | undefined;
  constructor(code: TicketKeyErrorCode, message: string, path?: string, cause?: unknown) {
    super(code, path === undefined ? message : `${path}: ${message}`, { cause });
    this.name = 'TicketKeyError';
    this.path = path;
  }
}

export interface TicketKeyFile {
  readonly key: Buffer;
  /** True when group/other permission bits are set; callers should warn. */
  readonly insecureMode: boolean;
}

export function generateTicketKey(): Buffer {
  return randomBytes(TICKET_KEY_BYTES);
}

function firstMeaningfulLine(text: string): string | undefined {
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line !== '' && !line.startsWith('#')) return line;
  }
  return undefined;
}

/** Printable ASCII and whitespace only: then it is hex/base64 text, not raw bytes. */
function isText(content: Buffer): boolean {
  return content.every(
    (byte) => (byte >= 0x20 && byte < 0x7f) || byte === 0x09 || byte === 0x0a || byte === 0x0d,
  );
}

/** Decode a ticket key from a file's bytes; `path` only labels errors. */
export function parseTicketKey(content: Buffer, path?: string): Buffer {
  if (content.length === TICKET_KEY_BYTES) return Buffer.from(content);
  if (!isText(content)) {
    throw new TicketKeyError(
      'UNHITCH_TICKET_KEY_LENGTH',
      `binary key file of ${content.length} bytes; a raw ticket key is ${TICKET_KEY_BYTES} bytes`,
      path,
    );
  }
  const line = firstMeaningfulLine(content.toString('latin1'));
  if (line === undefined) {
    throw new TicketKeyError(
      'UNHITCH_TICKET_KEY_FORMAT',
      `no key found (expected ${TICKET_KEY_BYTES} raw bytes, or hex/base64 text)`,
      path,
    );
  }
  let decoded: Buffer;
  if (/^[0-9a-fA-F]+$/.test(line) && line.length % 2 === 0) {
    decoded = Buffer.from(line, 'hex');
  } else if (/^[A-Za-z0-9+/]+={0,2}$/.test(line) || /^[A-Za-z0-9_-]+={0,2}$/.test(line)) {
    decoded = Buffer.from(line, line.includes('-') || line.includes('_') ? 'base64url' : 'base64');
  } else {
    throw new TicketKeyError(
      'UNHITCH_TICKET_KEY_FORMAT',
      `key is neither ${TICKET_KEY_BYTES} raw bytes nor hex nor base64 text`,
      path,
    );
  }
  if (decoded.length !== TICKET_KEY_BYTES) {
    throw new TicketKeyError(
      'UNHITCH_TICKET_KEY_LENGTH',
      `key decodes to ${decoded.length} bytes; a ticket key is ${TICKET_KEY_BYTES} bytes`,
      path,
    );
  }
  return decoded;
}

function fileError(path: string, action: string, error: unknown): TicketKeyError {
  const reason = error instanceof Error ? error.message : String(error);
  return new TicketKeyError('UNHITCH_TICKET_KEY_FILE', `cannot ${action}: ${reason}`, path, error);
}

/** Read a key and report whether its permissions expose it beyond the owner. */
export function readTicketKeyFile(path: string): TicketKeyFile {
  let content: Buffer;
  let mode: number;
  try {
    mode = statSync(path).mode;
    content = readFileSync(path);
  } catch (error) {
    throw fileError(path, 'read ticket key file', error);
  }
  return { key: parseTicketKey(content, path), insecureMode: (mode & NON_OWNER_MODE_BITS) !== 0 };
}

export function loadTicketKeyFile(path: string): Buffer {
  return readTicketKeyFile(path).key;
}

function checkKeyLength(key: Buffer): void {
  if (key.length !== TICKET_KEY_BYTES) {
    throw new TicketKeyError(
      'UNHITCH_TICKET_KEY_LENGTH',
      `ticket key must be ${TICKET_KEY_BYTES} bytes, got ${key.length}`,
    );
  }
}

/** Write `key` to a fresh 0600 file next to `path` (same filesystem, so rename/link work). */
function writeTempKeyFile(path: string, key: Buffer): string {
  const temp = join(
    dirname(path),
    `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`,
  );
  let fd: number | undefined;
  try {
    fd = openSync(temp, 'wx', TICKET_KEY_FILE_MODE);
    fchmodSync(fd, TICKET_KEY_FILE_MODE); // the umask may have narrowed it; never widened
    writeSync(fd, key);
    fsyncSync(fd);
  } catch (error) {
    if (fd !== undefined) closeSync(fd);
    fd = undefined;
    removeQuietly(temp);
    throw fileError(path, 'write ticket key file', error);
  }
  closeSync(fd);
  return temp;
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Already gone: nothing to clean up.
  }
}

/** Replace (or create) the key file atomically: readers see the old or the new key. */
export function saveTicketKeyFile(path: string, key: Buffer): void {
  checkKeyLength(key);
  const temp = writeTempKeyFile(path, key);
  try {
    renameSync(temp, path);
  } catch (error) {
    removeQuietly(temp);
    throw fileError(path, 'replace ticket key file', error);
  }
}

function isErrnoCode(error: unknown, code: string): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === code;
}

/**
 * Load the key, creating it when missing. Creation links the temp file into place
 * (link fails with EEXIST instead of overwriting), so when several workers race, one
 * key wins and every worker ends up with that same key.
 */
export function loadOrCreateTicketKeyFile(path: string): {
  key: Buffer;
  created: boolean;
  insecureMode: boolean;
} {
  try {
    const existing = readTicketKeyFile(path);
    return { ...existing, created: false };
  } catch (error) {
    const missing = error instanceof TicketKeyError && isErrnoCode(error.cause, 'ENOENT');
    if (!missing) throw error;
  }
  const key = generateTicketKey();
  const temp = writeTempKeyFile(path, key);
  try {
    linkSync(temp, path);
  } catch (error) {
    if (!isErrnoCode(error, 'EEXIST')) throw fileError(path, 'create ticket key file', error);
    const winner = readTicketKeyFile(path);
    return { ...winner, created: false };
  } finally {
    removeQuietly(temp);
  }
  return { key, created: true, insecureMode: false };
}
