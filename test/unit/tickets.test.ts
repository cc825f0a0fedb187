import assert from 'node:assert/strict';
import {
  chmodSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as tls from 'node:tls';
import { makeSelfSigned, type SelfSignedCertificate } from '../../src/tls/selfsigned.js';
import {
  generateTicketKey,
  loadOrCreateTicketKeyFile,
  loadTicketKeyFile,
  readTicketKeyFile,
  saveTicketKeyFile,
  TICKET_KEY_BYTES,
  TicketKeyError,
} from '../../src/tls/tickets.js';

let dir: string;
let cert: SelfSignedCertificate;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'unhitch-tickets-'));
  cert = makeSelfSigned({ dir: join(dir, 'cert') });
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

function assertTicketError(fn: () => unknown, code: string): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof TicketKeyError, String(error));
    assert.equal(error.code, code);
    return true;
  });
}

const modeOf = (path: string): number => statSync(path).mode & 0o777;

test('generated keys are 48 random bytes', () => {
  const a = generateTicketKey();
  const b = generateTicketKey();
  assert.equal(a.length, TICKET_KEY_BYTES);
  assert.equal(TICKET_KEY_BYTES, 48);
  assert.notDeepEqual(a, b);
});

test('save then load round trip; the file is 48 raw bytes with mode 0600', () => {
  const path = join(dir, 'roundtrip.key');
  const key = generateTicketKey();
  saveTicketKeyFile(path, key);
  assert.deepEqual(readFileSync(path), key);
  assert.equal(modeOf(path), 0o600);
  assert.deepEqual(loadTicketKeyFile(path), key);
  // Saving again replaces the key atomically.
  const next = generateTicketKey();
  saveTicketKeyFile(path, next);
  assert.deepEqual(loadTicketKeyFile(path), next);
  assert.equal(modeOf(path), 0o600);
});

test('accepted formats: raw, hex, base64 (after comments and blank lines)', () => {
  const key = generateTicketKey();
  const raw = join(dir, 'raw.key');
  writeFileSync(raw, key);
  assert.deepEqual(loadTicketKeyFile(raw), key);

  const hexPath = join(dir, 'hex.key');
  writeFileSync(hexPath, `# ticket key\n\n${key.toString('hex').toUpperCase()}\n`);
  assert.deepEqual(loadTicketKeyFile(hexPath), key);

  const b64Path = join(dir, 'b64.key');
  writeFileSync(b64Path, `  ${key.toString('base64')}  \r\nignored second line\n`);
  assert.deepEqual(loadTicketKeyFile(b64Path), key);

  const b64NoPad = join(dir, 'b64url.key');
  writeFileSync(b64NoPad, `${key.toString('base64url')}\n`);
  assert.deepEqual(loadTicketKeyFile(b64NoPad), key);
});

test('wrong lengths and junk are errors with stable codes', () => {
  const short = join(dir, 'short.key');
  writeFileSync(short, generateTicketKey().subarray(0, 32));
  assertTicketError(() => loadTicketKeyFile(short), 'UNHITCH_TICKET_KEY_LENGTH');

  const shortHex = join(dir, 'short-hex.key');
  writeFileSync(shortHex, `${generateTicketKey().subarray(0, 32).toString('hex')}\n`);
  assertTicketError(() => loadTicketKeyFile(shortHex), 'UNHITCH_TICKET_KEY_LENGTH');

  const longB64 = join(dir, 'long-b64.key');
  writeFileSync(longB64, `${Buffer.alloc(80, 7).toString('base64')}\n`);
  assertTicketError(() => loadTicketKeyFile(longB64), 'UNHITCH_TICKET_KEY_LENGTH');

  const junk = join(dir, 'junk.key');
  writeFileSync(junk, 'this is not a key!\n');
  assertTicketError(() => loadTicketKeyFile(junk), 'UNHITCH_TICKET_KEY_FORMAT');

  const empty = join(dir, 'empty.key');
  writeFileSync(empty, '# only a comment\n');
  assertTicketError(() => loadTicketKeyFile(empty), 'UNHITCH_TICKET_KEY_FORMAT');

  assertTicketError(() => loadTicketKeyFile(join(dir, 'missing.key')), 'UNHITCH_TICKET_KEY_FILE');
  assertTicketError(
    () => saveTicketKeyFile(join(dir, 'bad.key'), Buffer.alloc(47)),
    'UNHITCH_TICKET_KEY_LENGTH',
  );
  assertTicketError(
    () => saveTicketKeyFile(join(dir, 'no-such-dir', 'x.key'), generateTicketKey()),
    'UNHITCH_TICKET_KEY_FILE',
  );
});

test('group/world readable key files are flagged', () => {
  const path = join(dir, 'modes.key');
  saveTicketKeyFile(path, generateTicketKey());
  assert.equal(readTicketKeyFile(path).insecureMode, false);
  chmodSync(path, 0o640);
  assert.equal(readTicketKeyFile(path).insecureMode, true);
  chmodSync(path, 0o604);
  assert.equal(loadOrCreateTicketKeyFile(path).insecureMode, true);
});

test('loadOrCreate creates a 0600 file once, then loads the same key', () => {
  const path = join(dir, 'created.key');
  const first = loadOrCreateTicketKeyFile(path);
  assert.equal(first.created, true);
  assert.equal(first.insecureMode, false);
  assert.equal(first.key.length, TICKET_KEY_BYTES);
  assert.equal(modeOf(path), 0o600);
  assert.deepEqual(readFileSync(path), first.key);
  const second = loadOrCreateTicketKeyFile(path);
  assert.equal(second.created, false);
  assert.deepEqual(second.key, first.key);
  // No temp files are left behind.
  assert.deepEqual(
    readdirSync(dir).filter((name) => name.endsWith('.tmp')),
    [],
  );
});

test('loadOrCreate does not overwrite an invalid existing file', () => {
  const path = join(dir, 'invalid-existing.key');
  writeFileSync(path, 'not a key\n');
  assertTicketError(() => loadOrCreateTicketKeyFile(path), 'UNHITCH_TICKET_KEY_FORMAT');
  assert.equal(readFileSync(path, 'utf8'), 'not a key\n');
});

// --- real resumption across two servers --------------------------------------

type TlsVersion = 'TLSv1.2' | 'TLSv1.3';

async function startServer(ticketKey: Buffer): Promise<{ server: tls.Server; port: number }> {
  const server = tls.createServer({ key: cert.key, cert: cert.cert }, (socket) => {
    socket.end('ok');
  });
  server.setTicketKeys(ticketKey);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

function closeServer(server: tls.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Connect, read until the server closes, and report the session and whether it was reused. */
function connect(
  port: number,
  version: TlsVersion,
  session?: Buffer,
): Promise<{ reused: boolean; session: Buffer | undefined }> {
  return new Promise((resolve, reject) => {
    const sessions: Buffer[] = [];
    let reused = false;
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      rejectUnauthorized: false,
      minVersion: version,
      maxVersion: version,
      ...(session === undefined ? {} : { session }),
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('TLS connection timed out'));
    }, 5000);
    socket.on('secureConnect', () => {
      reused = socket.isSessionReused();
      assert.equal(socket.getProtocol(), version);
    });
    socket.on('session', (s: Buffer) => sessions.push(s));
    socket.on('data', () => {});
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ reused, session: sessions[0] });
    });
  });
}

for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
  test(`${version}: a ticket from server A resumes on server B only with the same key`, async () => {
    const sharedKey = generateTicketKey();
    const a = await startServer(sharedKey);
    const b = await startServer(Buffer.from(sharedKey));
    const other = await startServer(generateTicketKey());
    try {
      const first = await connect(a.port, version);
      assert.equal(first.reused, false);
      assert.ok(first.session, 'server A issued a session ticket');
      const onB = await connect(b.port, version, first.session);
      assert.equal(onB.reused, true, 'server B resumed A’s session');
      const onOther = await connect(other.port, version, first.session);
      assert.equal(onOther.reused, false, 'a server with another key cannot resume');
    } finally {
      await Promise.all([closeServer(a.server), closeServer(b.server), closeServer(other.server)]);
    }
  });
}
