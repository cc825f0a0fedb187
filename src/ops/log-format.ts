/**
 * What log lines look like. pino writes one JSON object per line; a person at a terminal
 * gets each as one readable line instead: time, level, which process, the message and
 * its fields as key=value. `log-format = auto` (the default) decides by whether stdout
 * is a terminal, so files, pipes and journald keep getting JSON.
 */
import { type DestinationStream, pino } from 'pino';
import type { LogFormat } from '../config/model.js';

const LEVELS: Readonly<Record<number, string>> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
};

/** Fields the line's head already says, or that nobody reading a terminal needs. */
const HEAD_FIELDS = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'role', 'worker']);

export function resolveLogFormat(format: LogFormat, isTerminal: boolean): 'json' | 'pretty' {
  if (format === 'auto') return isTerminal ? 'pretty' : 'json';
  return format;
}

function clock(epochMs: unknown): string {
  const date = typeof epochMs === 'number' ? new Date(epochMs) : new Date();
  const pad = (value: number, width = 2): string => String(value).padStart(width, '0');
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

/** "primary", "worker 1", or "worker 1 g3" for a worker of a later (reload) generation. */
function processLabel(line: Record<string, unknown>): string {
  if (line.role === 'worker' && line.worker !== undefined) {
    const later = typeof line.generation === 'number' && line.generation > 1;
    return `worker ${String(line.worker)}${later ? ` g${line.generation}` : ''}`;
  }
  if (typeof line.role === 'string') return line.role;
  return `pid ${String(line.pid)}`;
}

/** `host:port`, `[::1]:443`, `[*]:443` (every address). */
export function addressText(address: {
  readonly host?: string | undefined;
  readonly port: number;
}): string {
  const host = address.host ?? '*';
  return host.includes(':') || host === '*'
    ? `[${host}]:${address.port}`
    : `${host}:${address.port}`;
}

/** `{ host, port }` (a TcpAddress in a log field) as its address text, anything else unchanged. */
function asAddress(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value;
  const { host, port } = value as { host?: unknown; port?: unknown };
  if (typeof port !== 'number') return value;
  return addressText({ host: typeof host === 'string' ? host : undefined, port });
}

/** A value as it reads after `key=`: bare when it can be, JSON when it must be. */
function valueText(raw: unknown): string {
  const value = Array.isArray(raw) ? raw.map(asAddress) : asAddress(raw);
  if (typeof value === 'string') return /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value);
  if (Array.isArray(value) && value.every((item) => typeof item === 'string'))
    return value.length === 0 ? '[]' : valueText(value.join(','));
  if (typeof value === 'object' && value !== null) return JSON.stringify(value);
  return String(value);
}

/** pino's serialized error: its message, with the OS or OpenSSL code when there is one. */
function errorText(err: unknown): string {
  if (typeof err !== 'object' || err === null) return valueText(err);
  const { message, code } = err as { message?: unknown; code?: unknown };
  const text = typeof message === 'string' ? message : JSON.stringify(err);
  return JSON.stringify(typeof code === 'string' ? `${text} (${code})` : text);
}

/** One pino JSON line (with or without its newline) as one readable line. */
export function prettyLine(json: string): string {
  let line: Record<string, unknown>;
  try {
    line = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith('\n') ? json : `${json}\n`;
  }
  const level = (LEVELS[Number(line.level)] ?? String(line.level)).padEnd(5);
  const fields = Object.entries(line)
    .filter(([key]) => !HEAD_FIELDS.has(key) && !(key === 'generation' && line.role === 'worker'))
    .map(([key, value]) => `${key}=${key === 'err' ? errorText(value) : valueText(value)}`);
  const message = typeof line.msg === 'string' ? line.msg : '';
  return `${[clock(line.time), level, processLabel(line).padEnd(8), message, ...fields].join(' ')}\n`;
}

/** Writes each JSON line to `target` as a readable line. */
export class PrettyDestination implements DestinationStream {
  constructor(private readonly target: DestinationStream & { flushSync?: () => void }) {}

  write(line: string): void {
    this.target.write(prettyLine(line));
  }

  /** pino flushes through this on exit. */
  flushSync(): void {
    this.target.flushSync?.();
  }
}

/**
 * Standard output in the chosen format. Readable lines go out synchronously: a terminal
 * is read as it scrolls, the volume is a person's, and each process's lines then reach it
 * before anything that process does next (so `npm start`'s URL comes after the start-up
 * lines, not among them).
 */
export function consoleDestination(format: LogFormat): DestinationStream {
  const pretty = resolveLogFormat(format, process.stdout.isTTY === true) === 'pretty';
  const destination = pino.destination({ dest: 1, sync: pretty });
  return pretty ? new PrettyDestination(destination) : destination;
}

/** A log file keeps JSON unless readable lines were asked for by name. */
export function fileDestination(file: DestinationStream, format: LogFormat): DestinationStream {
  return format === 'pretty' ? new PrettyDestination(file) : file;
}
