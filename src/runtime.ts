/**
 * The Node.js lines unhitch runs on. Every entry point checks before anything else loads:
 * on an older Node the program fails much later with errors that say nothing about the
 * runtime (Node 20 rejects the default key-exchange groups: ERR_CRYPTO_OPERATION_FAILED).
 *
 * No imports, on purpose: an entry module imports only this file, so the check runs
 * before the rest of the program is even linked (entry modules: src/bin.ts,
 * src/cli.ts, src/demo/bin.ts).
 */

/** package.json `engines.node` says the same (a unit test keeps them equal). */
export const MINIMUM_NODE = { major: 22, minor: 12 } as const;

/** The one line an unsupported Node gets, or undefined when `version` is supported. */
export function runtimeRefusal(version: string): string | undefined {
  const match = /^v?(\d+)\.(\d+)\./.exec(version);
  const major = Number(match?.[1] ?? 0);
  const minor = Number(match?.[2] ?? 0);
  if (major > MINIMUM_NODE.major || (major === MINIMUM_NODE.major && minor >= MINIMUM_NODE.minor))
    return undefined;
  return `unhitch needs Node.js >= ${MINIMUM_NODE.major}.${MINIMUM_NODE.minor} (this is ${version}); see README "Quick start"`;
}

/** True when this Node is supported; otherwise says so on stderr and sets exit status 1. */
export function supportedNode(): boolean {
  const refusal = runtimeRefusal(process.version);
  if (refusal === undefined) return true;
  process.stderr.write(`${refusal}\n`);
  process.exitCode = 1;
  return false;
}
