/**
 * deny-repeat-offenders across workers: the counters stay in each worker (limits.ts), but
 * a ban is rare and must hold everywhere, so the worker that decides one tells the
 * primary, which keeps it here and hands it to every worker, and to each worker that
 * starts later (a restart, a reload's new generation) once it listens.
 */
import { MAX_TRACKED_CLIENTS } from '../proxy/limits.js';
import type { ClientBan } from './messages.js';

export class BanTable {
  /** Client → Date.now() at which its ban ends. */
  private readonly bans = new Map<string, number>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Keeps the later end of two bans of one client; at the bound the oldest ban goes. */
  add(ban: ClientBan): void {
    this.prune();
    const known = this.bans.get(ban.client);
    if (known === undefined && this.bans.size >= MAX_TRACKED_CLIENTS) {
      const oldest = this.bans.keys().next();
      if (!oldest.done) this.bans.delete(oldest.value);
    }
    this.bans.set(ban.client, Math.max(ban.untilMs, known ?? 0));
  }

  /** The bans still in force. */
  live(): ClientBan[] {
    this.prune();
    return [...this.bans].map(([client, untilMs]) => ({ client, untilMs }));
  }

  private prune(): void {
    const now = this.now();
    for (const [client, untilMs] of this.bans) if (untilMs <= now) this.bans.delete(client);
  }
}
