#!/usr/bin/env node
/**
 * The reconnect storm's client: holds --slots WebSocket connections (wss) through a proxy, one
 * TLS socket each, and on command drops them all or reconnects them all at once. Each
 * reconnect is: TCP connect, TLS 1.3 handshake (offering the slot's saved session ticket, or
 * not), the WebSocket upgrade, one announce sent and its answer received; only then is the
 * slot back. One process drives thousands of slots: no `ws` package, no per-connection
 * context, a fixed upgrade key (the accept it expects is computed once).
 *   node storm-client.js --port=P --slots=N [--first-slot=0] [--groups=X25519]
 *     [--timeout=60] [--parallel=0]
 * --timeout bounds a whole `connect` command, s: a slot not back by then (or not started, when
 * the queue of --parallel reconnects in flight has not reached it) is an error.
 * Commands on stdin, one per line; each is answered by one JSON line on stdout:
 *   `connect full|resumed [COUNT]` → {"event":"connected","result":ConnectResult}
 *     (the first COUNT slots, default all; `resumed` offers each slot's latest ticket)
 *   `drop` → {"event":"dropped","closed":N} (every open slot destroyed: FIN to the proxy)
 *   `exit` → exits 0.
 * It prints {"event":"ready"} once it reads commands.
 */
import { connect as connectTcp } from 'node:net';
import { createInterface } from 'node:readline';
import { connect, createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import { announceWithOffers, isAnnounceAnswer } from '../wt-load/protocol.js';
import { decodeServerFrames, encodeClientFrame, handshakeProblem } from './raw-ws-client.js';

export type ReconnectMode = 'full' | 'resumed';

/** What one `connect` command did, over its slots. */
export interface ConnectResult {
  readonly mode: ReconnectMode;
  readonly attempted: number;
  /** Upgraded and had their announce answered. */
  readonly back: number;
  /** Of those back, how many the server resumed (isSessionReused()). */
  readonly resumed: number;
  /** Of those attempted in `resumed` mode, how many had no ticket to offer. */
  readonly withoutTicket: number;
  readonly errors: number;
  /** Errors by reason, e.g. {"timeout": 3, "ECONNRESET": 1}. */
  readonly errorReasons: Readonly<Record<string, number>>;
  /** From the first connect to the last answered announce (or failure), ms. */
  readonly wallMs: number;
  /** This process's CPU over the command, µs. */
  readonly clientCpuMicros: number;
}

const OPCODE_TEXT = 0x1;
/** A fixed key: the server's accept is checked against it, and it costs no random bytes. */
const UPGRADE_KEY = 'c3Rvcm0tY2xpZW50LWtleQ==';
const MAX_HEAD_BYTES = 16 * 1024;
const TORRENTS = 64;

interface Slot {
  readonly peerId: string;
  readonly announce: Buffer;
  socket: TLSSocket | null;
  ticket: Buffer | undefined;
}

interface Settings {
  readonly port: number;
  readonly slots: number;
  readonly firstSlot: number;
  readonly groups: string;
  /** The whole command's bound: a slot not back this long after the first reconnect is an error. */
  readonly timeoutMs: number;
  /** At most this many reconnects in flight; 0: all at once. */
  readonly parallel: number;
}

type Outcome = { ok: true; resumed: boolean } | { ok: false; reason: string };

function flag(name: string, fallback: string): string {
  const prefix = `--${name}=`;
  return process.argv.find((a) => a.startsWith(prefix))?.slice(prefix.length) ?? fallback;
}

/** 20 characters, as WebTorrent's ids are; unique over every client process of a run. */
function peerIdOf(slot: number): string {
  return `-ST0001-${String(slot).padStart(12, '0')}`;
}

function announceOf(slot: number, peerId: string): Buffer {
  const infoHash = `storm-torrent-${String(slot % TORRENTS).padStart(6, '0')}`;
  return Buffer.from(announceWithOffers(infoHash, peerId, [], ''));
}

class StormClient {
  private readonly slots: Slot[];
  private readonly context: SecureContext;
  private readonly upgradeRequest: Buffer;

  constructor(private readonly settings: Settings) {
    this.slots = Array.from({ length: settings.slots }, (_, index) => {
      const peerId = peerIdOf(settings.firstSlot + index);
      return { peerId, announce: announceOf(index, peerId), socket: null, ticket: undefined };
    });
    // One context for every connection: building one per connect costs more than the handshake.
    this.context = createSecureContext({
      minVersion: 'TLSv1.3',
      ...(settings.groups === '' ? {} : { ecdhCurve: settings.groups }),
    });
    this.upgradeRequest = Buffer.from(
      `GET / HTTP/1.1\r\nHost: localhost:${settings.port}\r\nUpgrade: websocket\r\n` +
        `Connection: Upgrade\r\nSec-WebSocket-Key: ${UPGRADE_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
  }

  async connectAll(mode: ReconnectMode, count: number): Promise<ConnectResult> {
    const chosen = this.slots.slice(0, Math.min(count, this.slots.length));
    const cpuBefore = process.cpuUsage();
    const startedAt = performance.now();
    let back = 0;
    let resumed = 0;
    let withoutTicket = 0;
    const errorReasons: Record<string, number> = {};
    const record = (outcome: Outcome): void => {
      if (outcome.ok) {
        back++;
        if (outcome.resumed) resumed++;
      } else {
        errorReasons[outcome.reason] = (errorReasons[outcome.reason] ?? 0) + 1;
      }
    };
    const deadline = startedAt + this.settings.timeoutMs;
    const start = (slot: Slot): Promise<void> => {
      const offered = mode === 'resumed' ? slot.ticket : undefined;
      if (mode === 'resumed' && offered === undefined) withoutTicket++;
      const remainingMs = deadline - performance.now();
      if (remainingMs <= 0) {
        record({ ok: false, reason: 'timeout (not started)' });
        return Promise.resolve();
      }
      return this.reconnect(slot, offered, remainingMs).then(record);
    };
    if (this.settings.parallel > 0) {
      let next = 0;
      const lane = async (): Promise<void> => {
        while (next < chosen.length) await start(chosen[next++] as Slot);
      };
      await Promise.all(
        Array.from({ length: Math.min(this.settings.parallel, chosen.length) }, lane),
      );
    } else {
      await Promise.all(chosen.map(start));
    }
    const cpu = process.cpuUsage(cpuBefore);
    const errors = Object.values(errorReasons).reduce((sum, n) => sum + n, 0);
    return {
      mode,
      attempted: chosen.length,
      back,
      resumed,
      withoutTicket,
      errors,
      errorReasons,
      wallMs: performance.now() - startedAt,
      clientCpuMicros: cpu.user + cpu.system,
    };
  }

  /** Destroys every open slot's socket; resolves once each has closed. */
  async dropAll(): Promise<number> {
    const open = this.slots.filter((slot) => slot.socket !== null);
    await Promise.all(
      open.map(
        (slot) =>
          new Promise<void>((resolve) => {
            const socket = slot.socket as TLSSocket;
            slot.socket = null;
            if (socket.closed) {
              resolve();
              return;
            }
            socket.once('close', () => resolve());
            socket.destroy();
          }),
      ),
    );
    return open.length;
  }

  private reconnect(slot: Slot, session: Buffer | undefined, timeoutMs: number): Promise<Outcome> {
    return new Promise((resolve) => {
      let settled = false;
      let head = '';
      let upgraded = false;
      let carry: Buffer | null = null;
      const socket: TLSSocket = connect({
        // Nagle + delayed ACK would stall each flight by ~40 ms and measure latency, not CPU.
        socket: connectTcp({ host: '127.0.0.1', port: this.settings.port, noDelay: true }),
        servername: 'localhost',
        rejectUnauthorized: false,
        secureContext: this.context,
        session,
      });
      const settle = (outcome: Outcome): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (outcome.ok) slot.socket = socket;
        else socket.destroy();
        resolve(outcome);
      };
      const timer = setTimeout(() => settle({ ok: false, reason: 'timeout' }), timeoutMs);
      // Tickets come after the handshake, and again on a resumed one: keep the latest.
      socket.on('session', (ticket: Buffer) => {
        slot.ticket = ticket;
      });
      socket.once('secureConnect', () => socket.write(this.upgradeRequest));
      socket.on('data', (chunk: Buffer) => {
        if (settled) return; // held: whatever else the server sends is read and dropped
        let bytes = chunk;
        if (!upgraded) {
          head += chunk.toString('latin1');
          const end = head.indexOf('\r\n\r\n');
          if (end === -1) {
            if (head.length > MAX_HEAD_BYTES)
              settle({ ok: false, reason: 'upgrade head too long' });
            return;
          }
          const problem = handshakeProblem(head.slice(0, end), UPGRADE_KEY);
          if (problem !== null) {
            settle({ ok: false, reason: `upgrade refused: ${problem.slice(0, 60)}` });
            return;
          }
          upgraded = true;
          socket.write(encodeClientFrame(OPCODE_TEXT, slot.announce));
          bytes = Buffer.from(head.slice(end + 4), 'latin1');
          if (bytes.length === 0) return;
        }
        if (carry !== null) bytes = Buffer.concat([carry, bytes]);
        try {
          const { frames, consumed } = decodeServerFrames(bytes);
          carry = consumed < bytes.length ? Buffer.from(bytes.subarray(consumed)) : null;
          if (
            frames.some((frame) => frame.opcode === OPCODE_TEXT && isAnnounceAnswer(frame.payload))
          ) {
            settle({ ok: true, resumed: socket.isSessionReused() });
          }
        } catch (err) {
          settle({ ok: false, reason: (err as { code?: string }).code ?? 'bad frame' });
        }
      });
      socket.on('error', (err: NodeJS.ErrnoException) => {
        if (settled) slot.socket = null;
        settle({ ok: false, reason: err.code ?? err.message.slice(0, 60) });
      });
      socket.on('close', () => {
        if (settled) {
          if (slot.socket === socket) slot.socket = null;
          return;
        }
        settle({
          ok: false,
          reason: upgraded ? 'closed before the answer' : 'closed before the upgrade',
        });
      });
    });
  }
}

function write(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

function main(): void {
  const settings: Settings = {
    port: Number(flag('port', '0')),
    slots: Number(flag('slots', '100')),
    firstSlot: Number(flag('first-slot', '0')),
    groups: flag('groups', 'X25519'),
    timeoutMs: Number(flag('timeout', '60')) * 1000,
    parallel: Number(flag('parallel', '0')),
  };
  const client = new StormClient(settings);
  // Commands run one at a time, in order: the controller waits for each answer anyway.
  let queue: Promise<void> = Promise.resolve();
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    const [command, argument, count] = line.trim().split(/\s+/);
    queue = queue.then(async () => {
      if (command === 'connect' && (argument === 'full' || argument === 'resumed')) {
        const result = await client.connectAll(
          argument,
          count === undefined ? Infinity : Number(count),
        );
        write({ event: 'connected', result });
      } else if (command === 'drop') {
        write({ event: 'dropped', closed: await client.dropAll() });
      } else if (command === 'exit') {
        await client.dropAll();
        process.exit(0);
      } else {
        write({ event: 'error', message: `unknown command: ${line}` });
      }
    });
  });
  lines.on('close', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
  write({ event: 'ready' });
}

main();
