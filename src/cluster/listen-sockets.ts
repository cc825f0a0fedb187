/**
 * The primary's listening sockets: one SO_REUSEPORT socket per (frontend address, worker
 * slot), so the kernel spreads connections over the workers and no worker depends on
 * another's socket. The primary binds them (as root: privileged ports work) and never
 * accepts on them; it keeps its copy open so that a socket — and the connections queued
 * in its accept queue — outlives the worker using it:
 *
 * - a worker that backs off on fd exhaustion closes its copy and asks for it again;
 *   meanwhile new clients wait in the kernel queue instead of being refused;
 * - on reload the new generation's worker for slot i gets slot i's socket, the one the old
 *   worker accepted on, so nothing queued there is lost when the old one stops accepting
 *   (closing the last copy of a reuseport socket resets every connection in its queue;
 *   Linux only migrates them with net.ipv4.tcp_migrate_req = 1);
 * - a crashed worker's socket keeps queueing until its replacement listens, unless the
 *   slot's restart is delayed a second or more (it keeps crashing, or its fork keeps
 *   failing): then it is closed until the slot is back, see Supervisor.
 *
 * A socket is closed when its address leaves the config, its slot goes away, or its
 * slot is crash-looping.
 */
import type { TcpAddress } from '../config/model.js';
import { bindReusePort, type ListenHandle, resolveBindHost } from '../net/listen-socket.js';

interface Bound {
  readonly handle: ListenHandle;
  readonly port: number;
}

/** "host|port" as configured: the same configured address keeps its sockets across reloads. */
function addressKey(address: TcpAddress): string {
  return `${address.host ?? '*'}|${address.port}`;
}

export class ListenSockets {
  /** addressKey → slot → socket. */
  private readonly byAddress = new Map<string, Map<number, Bound>>();

  /**
   * Slot `slot`'s socket for `address`, bound now if it has none. With port 0 every slot
   * of that address gets the port the first one was given.
   */
  async socketFor(address: TcpAddress, slot: number): Promise<ListenHandle> {
    const key = addressKey(address);
    let slots = this.byAddress.get(key);
    const existing = slots?.get(slot);
    if (existing) return existing.handle;
    const host = await resolveBindHost(address.host);
    // Re-read after the await: a concurrent call for another slot may have bound the port.
    slots = this.byAddress.get(key);
    const again = slots?.get(slot);
    if (again) return again.handle;
    const sibling = slots?.values().next().value;
    const bound = bindReusePort(host, sibling?.port ?? address.port);
    if (!slots) {
      slots = new Map();
      this.byAddress.set(key, slots);
    }
    slots.set(slot, bound);
    return bound.handle;
  }

  /** Close every socket whose address is not in `addresses` or whose slot is ≥ `slots`. */
  retainOnly(addresses: readonly TcpAddress[], slots: number): void {
    const keep = new Set(addresses.map(addressKey));
    for (const [key, bySlot] of this.byAddress) {
      for (const [slot, bound] of bySlot) {
        if (keep.has(key) && slot < slots) continue;
        bound.handle.close();
        bySlot.delete(slot);
      }
      if (bySlot.size === 0) this.byAddress.delete(key);
    }
  }

  /** Close slot `slot`'s socket of every address (its worker is gone for a while). */
  closeSlot(slot: number): void {
    for (const [key, bySlot] of this.byAddress) {
      bySlot.get(slot)?.handle.close();
      bySlot.delete(slot);
      if (bySlot.size === 0) this.byAddress.delete(key);
    }
  }

  /** Whether slot `slot` holds a socket for any address. */
  slotBound(slot: number): boolean {
    for (const bySlot of this.byAddress.values()) if (bySlot.has(slot)) return true;
    return false;
  }

  closeAll(): void {
    this.retainOnly([], 0);
  }

  /** How many sockets are open (for tests and logs). */
  get size(): number {
    let count = 0;
    for (const bySlot of this.byAddress.values()) count += bySlot.size;
    return count;
  }
}
