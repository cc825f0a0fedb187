// Minimal types for the parts of webtorrent (3.x) and bittorrent-tracker's client that the
// peer tests use (neither package ships types).
declare module 'webtorrent' {
  import { EventEmitter } from 'node:events';

  export interface TorrentFile {
    readonly name: string;
    readonly length: number;
    arrayBuffer(): Promise<ArrayBuffer>;
  }

  export interface Torrent extends EventEmitter {
    readonly magnetURI: string;
    readonly infoHash: string;
    readonly files: TorrentFile[];
    readonly done: boolean;
    readonly numPeers: number;
  }

  export interface WebTorrentOptions {
    dht?: boolean;
    lsd?: boolean;
    utPex?: boolean;
    natUpnp?: boolean;
    natPmp?: boolean;
    webSeeds?: boolean;
    utp?: boolean;
    tracker?: { rtcConfig?: Record<string, unknown> };
  }

  export interface TorrentOptions {
    name?: string;
    announce?: string[];
    /** Directory the downloaded (or seeded) pieces are stored in. */
    path?: string;
  }

  export default class WebTorrent extends EventEmitter {
    constructor(options?: WebTorrentOptions);
    seed(input: Buffer, options: TorrentOptions, onseed?: (torrent: Torrent) => void): Torrent;
    add(
      torrentId: string,
      options: TorrentOptions,
      ontorrent?: (torrent: Torrent) => void,
    ): Torrent;
    destroy(callback?: (error?: Error) => void): void;
  }
}

declare module 'bittorrent-tracker' {
  import { EventEmitter } from 'node:events';

  export interface ClientOptions {
    infoHash: Buffer | string;
    peerId: Buffer | string;
    announce: string[];
    port: number;
    rtcConfig?: Record<string, unknown>;
  }

  export interface AnnounceUpdate {
    readonly announce: string;
    readonly complete: number;
    readonly incomplete: number;
  }

  /** The announce client WebTorrent itself uses; 'update' per response, 'warning' per failure. */
  export default class Client extends EventEmitter {
    constructor(options: ClientOptions);
    start(options?: Record<string, unknown>): void;
    update(options?: Record<string, unknown>): void;
    stop(options?: Record<string, unknown>): void;
    destroy(callback?: () => void): void;
  }
}
