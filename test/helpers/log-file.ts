/** The JSON lines of a `log-filename` as they are now (none while it does not exist). */
import { existsSync, readFileSync } from 'node:fs';
import type { UnhitchLogLine } from '../kit/unhitch-process.js';

export function readLogFile(path: string): UnhitchLogLine[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line.startsWith('{') && line.endsWith('}'))
    .map((line) => JSON.parse(line) as UnhitchLogLine);
}
