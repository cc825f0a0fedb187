/**
 * The demo backend for `npm start`: bittorrent-tracker serving WebSocket announces only,
 * on 127.0.0.1:<port>. Tells its parent over IPC once it listens.
 */
import Server from 'bittorrent-tracker/server';

const port = Number(process.argv[2] ?? 3001);
const tracker = new Server({ http: false, udp: false, ws: true, stats: false, trustProxy: true });
tracker.on('error', (err: Error) => {
  process.stderr.write(`demo tracker: ${err.message}\n`);
  process.exit(1);
});
tracker.listen(port, '127.0.0.1', () => {
  process.stdout.write(`demo tracker (bittorrent-tracker) on ws://127.0.0.1:${port}\n`);
  process.send?.('listening');
});
process.on('disconnect', () => process.exit(0));
// Ctrl-C reaches the whole process group: the demo stops the tracker itself, after the
// proxy has drained, so the connections it still relays keep their backend until then.
process.on('SIGINT', () => {});
