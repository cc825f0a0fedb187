/**
 * ACME tls-alpn-01 (RFC 8737) on the frontends: while the primary has a challenge open
 * for a name, a connection whose ClientHello offers `acme-tls/1` for that name gets the
 * challenge certificate, negotiates `acme-tls/1` and is closed after the handshake; it
 * never reaches the backend. Outside a challenge, or for a name the acme block does not
 * list, `acme-tls/1` is refused with a no_application_protocol alert.
 *
 * Why a ClientHello peek rather than node's ALPNCallback: an ALPNCallback replaces
 * ALPNProtocols, and returning "no protocol" from it is a fatal alert, so a frontend
 * without alpn-protos would refuse every client that offers ALPN (browsers offer h2 and
 * http/1.1). Routing by the peeked ALPN list leaves ordinary handshakes exactly as they
 * were and gives challenge connections a tls.Server of their own.
 */
import { createSecureContext, type SecureContext, type TlsOptions } from 'node:tls';

export const ACME_TLS_ALPN = 'acme-tls/1';

export class AcmeChallengeResponder {
  private readonly contexts = new Map<string, SecureContext>();
  private readonly allowed: ReadonlySet<string>;

  /** `names`: the acme block's domains; a challenge for any other name is refused. */
  constructor(names: readonly string[]) {
    this.allowed = new Set(names.map(normalize));
  }

  /** Open a challenge; false (and nothing served) for a name the config does not list. */
  open(name: string, cert: Buffer, key: Buffer): boolean {
    const normalized = normalize(name);
    if (!this.allowed.has(normalized)) return false;
    this.contexts.set(normalized, createSecureContext({ cert, key }));
    return true;
  }

  close(name: string): void {
    this.contexts.delete(normalize(name));
  }

  /** Whether a ClientHello with this SNI name and ALPN list is a challenge we answer. */
  answers(servername: string | undefined): boolean {
    return servername !== undefined && this.contexts.has(normalize(servername));
  }

  /** tls.Server options for challenge connections only (routed here after the peek). */
  serverOptions(handshakeTimeoutMs: number): TlsOptions {
    return {
      ALPNProtocols: [ACME_TLS_ALPN],
      handshakeTimeout: handshakeTimeoutMs,
      // Closed the moment a challenge ends: the handshake fails instead of serving a
      // certificate the CA would no longer accept.
      SNICallback: (servername, callback) => {
        callback(null, this.contexts.get(normalize(servername)));
      },
    };
  }
}

export function offersAcmeTls(alpn: readonly string[]): boolean {
  return alpn.includes(ACME_TLS_ALPN);
}

function normalize(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}
