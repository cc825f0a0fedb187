/**
 * Host names the root primary resolves (the addresses it binds: frontends, the metrics
 * endpoint, the http-01 listener; and the backend it checks at start, as Hitch does)
 * without root reading the answer.
 *
 * The primary runs as root to bind privileged ports, and a DNS answer is network input.
 * Hitch resolves in its root process; unhitch does not: as root, each name is resolved
 * in a short-lived child that drops to uid/gid 65534 (nobody/nogroup, which needs no
 * passwd entry) before it asks the resolver, and hands back only the addresses, as JSON
 * on a pipe whose size is capped. Without root there is nothing to drop, and the lookup
 * runs in-process.
 */
import { execFile } from 'node:child_process';
import { ADDRCONFIG } from 'node:dns';
import { lookup } from 'node:dns/promises';

/**
 * Every address a name resolves to, in resolver order. `addrconfig`: only families this
 * host has an address of (AI_ADDRCONFIG, as Hitch's frontend_listen asks).
 */
export type LookupAll = (name: string, addrconfig?: boolean) => Promise<readonly string[]>;

/** The unprivileged identity the lookup child drops to (nobody/nogroup on Debian). */
export const LOOKUP_CHILD_ID = 65534;
/** getaddrinfo's own retries (resolv.conf: 5 s × 2 attempts per server) fit in this. */
const LOOKUP_CHILD_TIMEOUT_MS = 30_000;
/** Enough for a few hundred addresses; a child that writes more is killed. */
const LOOKUP_CHILD_MAX_OUTPUT = 64 * 1024;

/**
 * The child: drop privileges first (groups, gid, then uid), then resolve argv[1] (with
 * AI_ADDRCONFIG when argv[3] is "1") and print `{"addresses":[...]}` or `{"code":…}`
 * (`"drop":true` when it could not drop). CommonJS via -e: no file to read as nobody, so
 * it runs from any checkout or package directory. Pipes are synchronous on Linux, so
 * what it writes is out before it exits.
 */
const CHILD_SOURCE = `
const id = Number(process.argv[2]);
try {
  process.setgroups([]);
  process.setgid(id);
  process.setuid(id);
} catch (error) {
  process.stdout.write(JSON.stringify({ code: error.code ?? 'EPERM', drop: true }));
  process.exit(0);
}
const dns = require('node:dns');
const hints = process.argv[3] === '1' ? dns.ADDRCONFIG : 0;
dns.lookup(process.argv[1], { all: true, hints }, (error, entries) => {
  process.stdout.write(JSON.stringify(error
    ? { code: error.code ?? 'EAI_FAIL' }
    : { addresses: entries.map((entry) => entry.address) }));
});
`;

/** A lookup error with the resolver's code (ENOTFOUND, EAI_AGAIN, …), as dns.lookup's. */
export function lookupError(name: string, code: string, cause?: unknown): NodeJS.ErrnoException {
  const error: NodeJS.ErrnoException = new Error(`getaddrinfo ${code} ${name}`, { cause });
  error.code = code;
  return error;
}

/** As root: the addresses from a child that dropped to LOOKUP_CHILD_ID first. */
export const unprivilegedLookupAll: LookupAll = (name, addrconfig = true) =>
  new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['-e', CHILD_SOURCE, '--', name, String(LOOKUP_CHILD_ID), addrconfig ? '1' : '0'],
      {
        cwd: '/',
        timeout: LOOKUP_CHILD_TIMEOUT_MS,
        maxBuffer: LOOKUP_CHILD_MAX_OUTPUT,
        // Only what the resolver reads (RES_OPTIONS, LOCALDOMAIN, HOSTALIASES…): not the
        // NODE_OPTIONS a test or an operator gave the proxy.
        env: { ...process.env, NODE_OPTIONS: '' },
        windowsHide: true,
      },
      (error, stdout) => {
        if (error) {
          const code =
            error.code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER'
              ? 'EAI_OVERFLOW'
              : error.killed
                ? 'ETIMEDOUT'
                : 'EAI_FAIL';
          reject(lookupError(name, code, error));
          return;
        }
        let answer: { addresses?: unknown; code?: unknown; drop?: unknown };
        try {
          answer = JSON.parse(stdout) as typeof answer;
        } catch (parseError) {
          reject(lookupError(name, 'EAI_FAIL', parseError));
          return;
        }
        if (answer.drop === true) {
          // No CAP_SETUID (a container that keeps uid 0 without it): say so, never resolve as root.
          const code = typeof answer.code === 'string' ? answer.code : 'EPERM';
          const refused = lookupError(name, code);
          refused.message = `cannot drop to uid ${LOOKUP_CHILD_ID} to resolve ${name} (${code})`;
          reject(refused);
          return;
        }
        const addresses = answer.addresses;
        if (Array.isArray(addresses) && addresses.every((a) => typeof a === 'string')) {
          resolve(addresses as string[]);
        } else {
          reject(lookupError(name, typeof answer.code === 'string' ? answer.code : 'EAI_FAIL'));
        }
      },
    );
  });

/** Without root: the process's own resolver. */
const inProcessLookupAll: LookupAll = async (name, addrconfig = true) =>
  (await lookup(name, { all: true, hints: addrconfig ? ADDRCONFIG : 0 })).map(
    (entry) => entry.address,
  );

/** The lookup for a name the primary will bind: unprivileged whenever we are root. */
export const bindLookupAll: LookupAll = (name, addrconfig = true) =>
  process.getuid?.() === 0
    ? unprivilegedLookupAll(name, addrconfig)
    : inProcessLookupAll(name, addrconfig);
