#!/usr/bin/env node
/**
 * The attacker of bench/abuse: one attack from one source address against a TLS port, bounded
 * in connections and time, until SIGTERM or --max-seconds. Prints JSON lines on stdout:
 * `attacking` once the attack is at full strength (or after RAMP_MAX_MS), `result` at the end.
 *   node abuse-attacker.js --attack=KIND --port=P [--source=127.0.0.2] [--sockets=N]
 *     [--lanes=N] [--max-seconds=S] [--max-connects=N] [--connect-rate=N] [--tickle-ms=MS]
 * Kinds:
 * - idle: hold --sockets connections that send nothing (reopened when the proxy closes one);
 * - slow-hello: --sockets connections each sending a ClientHello as 1-byte TLS records, a few
 *   records every RECORD_TICK_MS, then starting over;
 * - plaintext: --lanes loops of connect, an HTTP request in clear, wait for the close, reset;
 * - handshake: --lanes loops of full TLS handshakes, reset right after;
 * - slowloris-pre: --sockets connections trickling a ClientHello a byte every --tickle-ms;
 * - slowloris-post: --sockets connections that finish the handshake (at most --lanes at a time)
 *   then trickle an HTTP request head a byte every --tickle-ms.
 * Connections end with a reset (no TIME_WAIT left on the attacker's ports, as a flood tool
 * would do); every new connection takes a token from a --connect-rate bucket and the run stops
 * opening new ones after --max-connects.
 */
import { connect as connectTcp, type Socket } from 'node:net';
import { connect as connectTls, createSecureContext, type TLSSocket } from 'node:tls';
import { ATTACKS, type AttackerResult, type AttackKind } from './abuse-kinds.js';
import { captureClientHello, oneByteRecords } from './client-hello.js';

const RAMP_MAX_MS = 4_000;
/** A lane or slot whose connection ended waits this long before the next. */
const REOPEN_DELAY_MS = 100;
/** slow-hello: records written per tick per socket, and the tick. */
const RECORDS_PER_TICK = 4;
const RECORD_TICK_MS = 50;
/** A flood connection that got no answer within this is reset and counted as ended by us. */
const FLOOD_WAIT_MS = 2_000;
const PLAINTEXT_REQUEST = 'GET / HTTP/1.1\r\nHost: tracker.example\r\nUser-Agent: flood\r\n\r\n';
const SLOW_REQUEST_HEAD =
  'GET /announce HTTP/1.1\r\nHost: tracker.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';

interface AttackerSettings {
  readonly attack: AttackKind;
  readonly port: number;
  readonly source: string;
  readonly sockets: number;
  readonly lanes: number;
  readonly maxSeconds: number;
  readonly maxConnects: number;
  readonly connectRate: number;
  readonly tickleMs: number;
}

/** One attacker run: the counters, the connect budget, and the attacks as methods. */
class Attacker {
  private connects = 0;
  private established = 0;
  private connectErrors = 0;
  private closedByProxy = 0;
  private handshakes = 0;
  private open = 0;
  private maxOpen = 0;
  private stopping = false;
  private readonly sockets = new Set<Socket>();
  private readonly startedAt = performance.now();
  private tokens: number;
  private tokensAt = performance.now();
  private readonly tlsContext = createSecureContext({ ecdhCurve: 'X25519' });

  constructor(private readonly settings: AttackerSettings) {
    this.tokens = Math.min(settings.connectRate, 100);
  }

  get stopped(): boolean {
    return this.stopping;
  }

  get openConnections(): number {
    return this.open;
  }

  /** Connections attempted so far. */
  get attempts(): number {
    return this.connects;
  }

  stop(): void {
    this.stopping = true;
    for (const socket of this.sockets) socket.resetAndDestroy();
    this.sockets.clear();
  }

  result(): AttackerResult {
    return {
      attack: this.settings.attack,
      connects: this.connects,
      established: this.established,
      connectErrors: this.connectErrors,
      closedByProxy: this.closedByProxy,
      handshakes: this.handshakes,
      maxOpen: this.maxOpen,
      seconds: (performance.now() - this.startedAt) / 1000,
    };
  }

  /** Waits for a connect token; false once the run is over or its connections are spent. */
  private async takeConnectToken(): Promise<boolean> {
    for (let waits = 0; !this.stopping && waits < 10_000; waits++) {
      if (this.connects >= this.settings.maxConnects) return false;
      const now = performance.now();
      this.tokens = Math.min(
        this.settings.connectRate,
        this.tokens + ((now - this.tokensAt) / 1000) * this.settings.connectRate,
      );
      this.tokensAt = now;
      if (this.tokens >= 1) {
        this.tokens -= 1;
        this.connects++;
        return true;
      }
      await delay(Math.max(1, (1000 * (1 - this.tokens)) / this.settings.connectRate));
    }
    return false;
  }

  /**
   * A TCP connection from the source address. `ended` runs once, with whether the proxy ended
   * it (rather than the attacker, or a connect error).
   */
  private openSocket(
    onConnect: (socket: Socket, end: () => void) => void,
    ended: (byProxy: boolean) => void,
  ): void {
    const socket = connectTcp({
      host: '127.0.0.1',
      port: this.settings.port,
      localAddress: this.settings.source,
      noDelay: true,
    });
    this.sockets.add(socket);
    let connected = false;
    let done = false;
    const finish = (byProxy: boolean): void => {
      if (done) return;
      done = true;
      this.sockets.delete(socket);
      if (connected) this.open--;
      if (byProxy && connected) this.closedByProxy++;
      if (!connected) this.connectErrors++;
      if (!socket.destroyed) socket.resetAndDestroy();
      ended(byProxy && connected);
    };
    socket.once('connect', () => {
      connected = true;
      this.established++;
      this.open++;
      this.maxOpen = Math.max(this.maxOpen, this.open);
      // The attacker's own end goes through finish(false), so the counters know who closed.
      onConnect(socket, () => finish(false));
    });
    socket.on('error', () => finish(true));
    socket.once('end', () => finish(true));
    socket.once('close', () => finish(true));
  }

  /** Runs `slot` again and again, REOPEN_DELAY_MS apart, while the budget lasts. */
  private async keepSlot(slot: () => Promise<void>): Promise<void> {
    while (!this.stopping && (await this.takeConnectToken())) {
      await slot();
      if (!this.stopping) await delay(REOPEN_DELAY_MS);
    }
  }

  /** A connection that does `work` once up, until either side ends it; resolves then. */
  private session(work: (socket: Socket, end: () => void) => void): Promise<void> {
    return new Promise((resolve) => {
      this.openSocket(work, () => resolve());
    });
  }

  idle(): Promise<void>[] {
    return slots(this.settings.sockets, () => this.keepSlot(() => this.session(() => {})));
  }

  slowloris(bytes: Buffer): Promise<void>[] {
    return slots(this.settings.sockets, () =>
      this.keepSlot(() =>
        this.session((socket) => {
          // Spread over the tick, or every socket would write in the same instant.
          const first = setTimeout(
            () => this.trickle(socket, socket, bytes),
            Math.random() * this.settings.tickleMs,
          );
          socket.once('close', () => clearTimeout(first));
          socket.resume();
        }),
      ),
    );
  }

  slowHello(records: readonly Buffer[]): Promise<void>[] {
    return slots(this.settings.sockets, () =>
      this.keepSlot(() =>
        this.session((socket, end) => {
          let next = 0;
          const timer = setInterval(() => {
            if (socket.destroyed) {
              clearInterval(timer);
              return;
            }
            if (next >= records.length) {
              // The whole hello is out: start over on a new connection once the proxy answered.
              clearInterval(timer);
              socket.once('data', end);
              setTimeout(end, FLOOD_WAIT_MS);
              return;
            }
            socket.write(Buffer.concat(records.slice(next, next + RECORDS_PER_TICK)));
            next += RECORDS_PER_TICK;
          }, RECORD_TICK_MS);
          socket.once('close', () => clearInterval(timer));
          socket.resume();
        }),
      ),
    );
  }

  plaintext(): Promise<void>[] {
    return slots(this.settings.lanes, () =>
      this.keepSlotFast(() =>
        this.session((socket, end) => {
          socket.write(PLAINTEXT_REQUEST);
          socket.resume();
          setTimeout(end, FLOOD_WAIT_MS);
        }),
      ),
    );
  }

  handshake(): Promise<void>[] {
    return slots(this.settings.lanes, () =>
      this.keepSlotFast(() =>
        this.session((socket, end) => {
          this.startTls(socket, () => end());
          setTimeout(end, FLOOD_WAIT_MS);
        }),
      ),
    );
  }

  slowlorisPost(): Promise<void>[] {
    // At most `lanes` handshakes at a time: the ramp is a trickle of handshakes, not a flood.
    let handshaking = 0;
    const head = Buffer.from(SLOW_REQUEST_HEAD);
    return slots(this.settings.sockets, () =>
      this.keepSlot(async () => {
        while (handshaking >= this.settings.lanes && !this.stopping) await delay(10);
        handshaking++;
        let counted = true;
        const release = (): void => {
          if (counted) handshaking--;
          counted = false;
        };
        await this.session((socket) => {
          socket.once('close', release);
          this.startTls(socket, (tls) => {
            release();
            this.trickle(tls, socket, head);
          });
        });
        release();
      }),
    );
  }

  /** Writes `bytes` to `stream` one byte every tickleMs, until done or `socket` closes. */
  private trickle(stream: Socket | TLSSocket, socket: Socket, bytes: Buffer): void {
    let sent = 0;
    const timer = setInterval(() => {
      if (stream.destroyed || sent >= bytes.length) {
        clearInterval(timer);
        return;
      }
      stream.write(bytes.subarray(sent, sent + 1));
      sent++;
    }, this.settings.tickleMs);
    socket.once('close', () => clearInterval(timer));
  }

  /** Like keepSlot without the pause between connections: a flood. */
  private async keepSlotFast(slot: () => Promise<void>): Promise<void> {
    while (!this.stopping && (await this.takeConnectToken())) await slot();
  }

  private startTls(socket: Socket, onSecure: (tls: TLSSocket) => void): void {
    const tls = connectTls({
      socket,
      servername: 'localhost',
      rejectUnauthorized: false,
      secureContext: this.tlsContext,
    });
    tls.on('error', () => {});
    tls.once('secureConnect', () => {
      this.handshakes++;
      onSecure(tls);
    });
    tls.resume();
  }
}

function slots(count: number, run: () => Promise<void>): Promise<void>[] {
  return Array.from({ length: count }, run);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function flag(name: string, fallback: string): string {
  const prefix = `--${name}=`;
  return process.argv.find((a) => a.startsWith(prefix))?.slice(prefix.length) ?? fallback;
}

function settingsFromArgv(): AttackerSettings {
  const attack = flag('attack', '');
  if (!(ATTACKS as readonly string[]).includes(attack)) {
    throw new Error(`--attack must be one of ${ATTACKS.join(', ')}`);
  }
  return {
    attack: attack as AttackKind,
    port: Number(flag('port', '0')),
    source: flag('source', '127.0.0.2'),
    sockets: Number(flag('sockets', '1000')),
    lanes: Number(flag('lanes', '32')),
    maxSeconds: Number(flag('max-seconds', '30')),
    maxConnects: Number(flag('max-connects', '200000')),
    connectRate: Number(flag('connect-rate', '5000')),
    tickleMs: Number(flag('tickle-ms', '2000')),
  };
}

/**
 * Full strength: the held connections are (nearly) all open, or every slot has been refused
 * and tried again, or a flood has run a moment.
 */
function atFullStrength(
  settings: AttackerSettings,
  attacker: Attacker,
  elapsedMs: number,
): boolean {
  switch (settings.attack) {
    case 'idle':
    case 'slow-hello':
    case 'slowloris-pre':
    case 'slowloris-post':
      // Held, or refused and being retried: past that point the attack does not grow.
      return (
        attacker.openConnections >= settings.sockets * 0.9 ||
        (attacker.attempts >= 2 * settings.sockets && elapsedMs >= 1_000)
      );
    case 'plaintext':
    case 'handshake':
      return elapsedMs >= 300;
  }
}

async function main(): Promise<void> {
  const settings = settingsFromArgv();
  const hello = await captureClientHello();
  const attacker = new Attacker(settings);
  const print = (event: Record<string, unknown>): void => {
    process.stdout.write(`${JSON.stringify(event)}\n`);
  };
  let finished = false;
  const finish = (): void => {
    if (finished) return;
    finished = true;
    attacker.stop();
    print({ event: 'result', result: attacker.result() });
    // Let stdout drain before leaving.
    setTimeout(() => process.exit(0), 50);
  };
  process.once('SIGTERM', finish);
  process.once('SIGINT', finish);
  setTimeout(finish, settings.maxSeconds * 1000);
  const startedAt = performance.now();
  const ramp = setInterval(() => {
    const elapsed = performance.now() - startedAt;
    if (atFullStrength(settings, attacker, elapsed) || elapsed >= RAMP_MAX_MS) {
      clearInterval(ramp);
      print({ event: 'attacking', open: attacker.openConnections });
    }
  }, 50);
  const runs: Record<AttackKind, () => Promise<void>[]> = {
    idle: () => attacker.idle(),
    'slow-hello': () => attacker.slowHello(oneByteRecords(hello)),
    plaintext: () => attacker.plaintext(),
    handshake: () => attacker.handshake(),
    'slowloris-pre': () => attacker.slowloris(hello),
    'slowloris-post': () => attacker.slowlorisPost(),
  };
  await Promise.all(runs[settings.attack]());
  // Budget spent before the time bound: hold what is open until told to stop.
}

main().catch((err: unknown) => {
  process.stderr.write(`abuse-attacker: ${(err as Error).message}\n`);
  process.exit(1);
});
