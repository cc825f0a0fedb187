#!/usr/bin/env node
/**
 * bittorrent-tracker (WebTorrent's reference tracker) serving WebSocket only.
 * Usage: node bittorrent-tracker.js PORT
 */
import Server from 'bittorrent-tracker/server';

const port = Number(process.argv[2] ?? 0);
const tracker = new Server({ udp: false, http: false, ws: true, stats: false, trustProxy: true });
tracker.on('error', (err: Error) => {
  process.stderr.write(`bittorrent-tracker: ${err.message}\n`);
  process.exit(1);
});
// Warnings (unknown to_peer_id after a peer left, …) are part of normal churn.
tracker.on('warning', () => {});
tracker.listen(port, '127.0.0.1', () => {
  process.stdout.write(`bittorrent-tracker listening on ws://127.0.0.1:${port}\n`);
});
process.on('SIGTERM', () => tracker.close(() => process.exit(0)));
