/**
 * The one stderr line a failed start ends with, saying why in Hitch's shape: a frontend
 * that cannot be bound is Hitch's `{bind-socket}: Address already in use: [127.0.0.1]:443`
 * (hitch.c, create_listen_sock: `ERR("{bind-socket}: %s: %s\n", strerror(errno), pspec)`),
 * not a pointer to JSON log lines on stdout.
 */
import { ListenSocketError } from '../net/listen-socket.js';
import { strerror } from '../net/strerror.js';

export function startFailureMessage(error: unknown): string {
  if (error instanceof ListenSocketError && error.address !== undefined)
    return `{bind-socket}: ${strerror(error.errno)}: ${error.address}`;
  if (error instanceof Error) return `workers failed to start: ${error.message}`;
  return 'workers failed to start; see the log above';
}
