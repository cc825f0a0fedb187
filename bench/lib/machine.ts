/** What RESULTS.md says about the machine a bench ran on. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { runtimeLines } from './runtimes.js';

function firstLine(command: string, args: readonly string[]): string | null {
  try {
    const out = execFileSync(command, args, {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return out.split('\n')[0]?.trim() || null;
  } catch (err) {
    const stderr = (err as { stderr?: unknown }).stderr;
    return typeof stderr === 'string' && stderr.trim()
      ? (stderr.split('\n')[0]?.trim() ?? null)
      : null;
  }
}

export function cpuModel(): string {
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (match?.[1]) return match[1].trim();
  } catch {
    // not Linux
  }
  return cpus()[0]?.model ?? 'unknown';
}

export function machineDescription(): string[] {
  return [
    `- Date: ${new Date().toISOString()}`,
    `- CPU: ${cpuModel()} × ${cpus().length}`,
    `- Kernel: ${release()}`,
    ...runtimeLines(),
    `- Hitch: ${firstLine('hitch', ['--version']) ?? 'not installed'}`,
    `- HAProxy: ${firstLine('haproxy', ['-v']) ?? 'not installed'}`,
    `- Open files limit (soft/hard): ${firstLine('sh', ['-c', 'echo $(ulimit -Sn)/$(ulimit -Hn)']) ?? '?'}`,
  ];
}

/** /proc/loadavg's 1, 5 and 15 minute figures ("unknown" off Linux): a noisy-machine flag. */
export function loadAverage(): string {
  try {
    return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  } catch {
    return 'unknown';
  }
}
