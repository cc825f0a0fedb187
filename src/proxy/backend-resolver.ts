/**
 * The backend's address when it is given by name. Hitch resolves the name once at start
 * and, with backend-refresh = N, again every N seconds: new connections follow the new
 * address, connections already open keep theirs. Resolving per connection (what
 * net.connect does with a name) would cost a getaddrinfo per client and follow every
 * DNS change at once, which is not what a Hitch operator configured.
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';

/** Name → one IP address (the first getaddrinfo answer, as Hitch takes it). */
export type HostLookup = (host: string) => Promise<string>;

export const systemLookup: HostLookup = async (host) => (await lookup(host)).address;

export interface ResolverEvents {
  /** The address new connections use changed (or was first found). */
  onResolved(host: string, address: string, previous: string | undefined): void;
  /** A lookup failed; the previous address (or, never resolved, the name) stays in use. */
  onResolveFailed(host: string, error: Error): void;
}

export class BackendResolver {
  private address: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    readonly host: string,
    private readonly refreshSec: number,
    private readonly lookupHost: HostLookup,
    private readonly events: ResolverEvents,
  ) {}

  /** What to connect to now: the resolved address, or the name until one is known. */
  get target(): string {
    return this.address ?? this.host;
  }

  /** Resolve once, then every refreshSec seconds (0: never again). */
  async start(): Promise<void> {
    if (isIP(this.host) !== 0) return; // a literal needs no lookup
    await this.refresh();
    if (this.refreshSec > 0 && !this.stopped) {
      this.timer = setInterval(() => void this.refresh(), this.refreshSec * 1000);
      this.timer.unref();
    }
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  private async refresh(): Promise<void> {
    try {
      const address = await this.lookupHost(this.host);
      if (this.stopped || address === this.address) return;
      const previous = this.address;
      this.address = address;
      this.events.onResolved(this.host, address, previous);
    } catch (error) {
      if (!this.stopped) this.events.onResolveFailed(this.host, error as Error);
    }
  }
}
