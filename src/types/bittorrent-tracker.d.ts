// Minimal types for the parts of bittorrent-tracker's server we use (the package ships none).
declare module 'bittorrent-tracker/server' {
  import { EventEmitter } from 'node:events';

  export interface TrackerServerOptions {
    http?: boolean;
    udp?: boolean;
    /** true, or options for its `ws` WebSocketServer. */
    ws?: boolean | { clientTracking?: boolean };
    stats?: boolean;
    trustProxy?: boolean;
    interval?: number;
    filter?: (infoHash: string, params: unknown, cb: (err: Error | null) => void) => void;
  }

  export default class Server extends EventEmitter {
    constructor(options?: TrackerServerOptions);
    listen(port: number, hostname?: string, onlistening?: () => void): void;
    close(cb?: () => void): void;
    readonly ws: {
      address(): { port: number };
      /** Only with `ws: { clientTracking: true }`. */
      readonly clients?: Set<{ terminate(): void }>;
    } | null;
    /** The HTTP server carrying the WebSocket upgrade (created for `ws` even without `http`). */
    readonly http: import('node:http').Server | null;
    readonly torrents: Record<string, unknown>;
  }
}
