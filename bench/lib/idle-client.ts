#!/usr/bin/env node
/**
 * Opens up to --target idle WebSocket connections (wss through a proxy, or ws direct), at most
 * --parallel handshakes at a time, then prints {"event":"holding",...} and holds them until
 * stdin closes or SIGTERM, then prints the result.
 *   node idle-client.js --url=wss://127.0.0.1:P --target=10000 [--parallel=200] [--max-seconds=120]
 */
import WebSocket from 'ws';

function flag(name: string, fallback: string): string {
  const prefix = `--${name}=`;
  return process.argv.find((a) => a.startsWith(prefix))?.slice(prefix.length) ?? fallback;
}

const url = flag('url', 'ws://127.0.0.1:3000');
const target = Number(flag('target', '1000'));
const parallel = Number(flag('parallel', '200'));
const maxSeconds = Number(flag('max-seconds', '120'));
/** Stop trying after this many failed opens: the proxy (or a limit) has had enough. */
const MAX_FAILURES = Math.max(50, Math.floor(target / 100));

const sockets: WebSocket[] = [];
let open = 0;
let failures = 0;
let firstError = '';

function openOne(): Promise<void> {
  return new Promise((resolve) => {
    const socket = new WebSocket(url, { rejectUnauthorized: false, perMessageDeflate: false });
    let settled = false;
    const settle = (ok: boolean, reason = ''): void => {
      if (settled) return;
      settled = true;
      if (ok) {
        open++;
        sockets.push(socket);
      } else {
        failures++;
        if (!firstError) firstError = reason;
        socket.terminate();
      }
      resolve();
    };
    socket.once('open', () => settle(true));
    socket.once('error', (err) => settle(false, err.message));
    socket.once('close', () => {
      if (settled) open--;
      settle(false, 'closed');
    });
  });
}

async function main(): Promise<void> {
  const deadline = Date.now() + maxSeconds * 1000;
  let started = 0;
  const lane = async (): Promise<void> => {
    while (started < target && failures < MAX_FAILURES && Date.now() < deadline) {
      started++;
      await openOne();
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, target) }, lane));
  await new Promise((r) => setTimeout(r, 1000)); // let the proxy settle its buffers
  const finish = (): void => {
    const result = { target, open, failures, firstError };
    process.stdout.write(`${JSON.stringify({ event: 'result', result })}\n`);
    for (const socket of sockets) socket.terminate();
    process.exit(0);
  };
  // Ready for the SIGTERM before saying 'holding': the runner sends it as soon as it has
  // sampled RSS, and on a busy CPU that came before process.stdin's first use returned,
  // killing the client without a result.
  process.on('SIGTERM', finish);
  process.stdin.on('end', finish);
  process.stdin.resume();
  setTimeout(finish, 60_000);
  process.stdout.write(`${JSON.stringify({ event: 'holding', open, failures, firstError })}\n`);
}

void main();
