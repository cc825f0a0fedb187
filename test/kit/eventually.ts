/**
 * Waits on state that emits no event a test can listen to (a metrics page, a /proc entry,
 * whether a port accepts): observes it until it yields a value, within a deadline.
 */
const OBSERVE_EVERY_MS = 20;

export async function eventually<T>(
  observe: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await observe();
    if (value !== undefined) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, OBSERVE_EVERY_MS));
  }
}
