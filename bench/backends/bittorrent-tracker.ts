#!/usr/bin/env node
/**
 * bittorrent-tracker (WebTorrent's reference tracker) serving WebSocket only.
 * Usage: node bittorrent-tracker.js PORT [BACKLOG] [STALL_MS/EVERY_MS]
 * BACKLOG is the listen backlog (default node's 511); STALL_MS/EVERY_MS blocks the event loop
 * for STALL_MS every EVERY_MS, so the tracker accepts slowly (a busy single-threaded tracker):
 * the conditions under which a proxy's backend connects queue, get dropped and time out.
 */
import Server from 'bittorrent-tracker/server';

const port = Number(process.argv[2] ?? 0);
const backlog = process.argv[3] ? Number(process.argv[3]) : undefined;
const stall = /^(\d+)\/(\d+)$/.exec(process.argv[4] ?? '');
const tracker = new Server({ udp: false, http: false, ws: true, stats: false, trustProxy: true });
tracker.on('error', (err: Error) => {
  process.stderr.write(`bittorrent-tracker: ${err.message}\n`);
  process.exit(1);
});
// Warnings (unknown to_peer_id after a peer left, …) are part of normal churn.
tracker.on('warning', () => {});
const announce = (): void => {
  process.stdout.write(`bittorrent-tracker listening on ws://127.0.0.1:${port}\n`);
};
if (backlog === undefined) tracker.listen(port, '127.0.0.1', announce);
else {
  // Server.listen has no backlog argument; its HTTP server (which carries the WebSocket
  // upgrade) does, and the tracker's 'listening' follows that server's.
  tracker.once('listening', announce);
  tracker.http?.listen({ port, host: '127.0.0.1', backlog });
}
if (stall) {
  const [stallMs, everyMs] = [Number(stall[1]), Number(stall[2])];
  setInterval(() => {
    const until = performance.now() + stallMs;
    while (performance.now() < until) {
      // busy: nothing is accepted or answered meanwhile
    }
  }, everyMs);
}
process.on('SIGTERM', () => tracker.close(() => process.exit(0)));
