import { constants } from 'node:os';
import { getSystemErrorMessage } from 'node:util';

/** strerror(3) for an errno name (EADDRINUSE → "Address already in use"), as Hitch prints it. */
export function strerror(errnoName: string): string {
  const errno = (constants.errno as Record<string, number | undefined>)[errnoName];
  if (errno === undefined) return errnoName;
  // libuv's text is glibc's, lower-cased ("address already in use"): capitalised back.
  const text = getSystemErrorMessage(-errno);
  return `${text.charAt(0).toUpperCase()}${text.slice(1)}`;
}
