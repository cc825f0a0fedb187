/**
 * WebTorrent clients in node for the peer tests: WebRTC from node-datachannel (through
 * webrtc-polyfill, which @thaunknown/simple-peer imports), no DHT/LSD/PEX/UPnP, so the
 * tracker behind unhitch is the only way peers find each other.
 */
import { readFileSync } from 'node:fs';
import { getCACertificates, setDefaultCACertificates } from 'node:tls';
import WebTorrent from 'webtorrent';

/**
 * No ICE servers: there is no STUN to reach. node-datachannel (libjuice) skips loopback
 * when it gathers host candidates; `bindAddress` (passed through webrtc-polyfill to
 * node-datachannel) makes it gather exactly one, 127.0.0.1.
 */
export const RTC_CONFIG = { iceServers: [], bindAddress: '127.0.0.1' };

export function webTorrentClient(): WebTorrent {
  return new WebTorrent({
    dht: false,
    lsd: false,
    utPex: false,
    natUpnp: false,
    natPmp: false,
    webSeeds: false,
    utp: false,
    tracker: { rtcConfig: RTC_CONFIG },
  });
}

/** Makes this process's TLS clients (the tracker WebSocket) trust `certPath` too. */
export function trustCertificate(certPath: string): void {
  setDefaultCACertificates([...getCACertificates('default'), readFileSync(certPath, 'utf8')]);
}

/**
 * webtorrent's destroy waits on its trackers' goodbyes; bounded so a cleanup that never
 * calls back cannot hold the test file open.
 */
export function destroyClient(client: WebTorrent, timeoutMs = 5_000): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    timer.unref();
    client.destroy(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
