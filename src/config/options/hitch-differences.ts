/**
 * Where a Hitch option behaves differently in unhitch, one clause each, on purpose or
 * because node cannot do what Hitch does. Options absent here behave as Hitch's.
 * Keyed by option name, beside the table; docs/configuration.md and unhitch.conf(5)
 * print them, docs/operations.md explains the larger ones.
 */
export const HITCH_DIFFERENCES: Readonly<Record<string, string>> = Object.freeze({
  workers:
    "Hitch's default is 1 worker, and Hitch takes any count (each unhitch worker is a node process of some 50 MB)",
  'prefer-server-ciphers': "Hitch's default is off (scanners rate a client-chosen order HIGH)",
  'ecdh-curve':
    "Hitch's default is OpenSSL's own group list (with OpenSSL 3.0 also X448, P-521 and FFDHE); unhitch's is X25519MLKEM768:X25519:P-256:P-384, so a client offering only X448, P-521 or FFDHE groups is refused",
  'tls-protos':
    'SSLv3, TLSv1.0 and TLSv1.1 are accepted with a warning; Node refuses them at its default security level',
  'alpn-protos': 'ALPN only: Hitch also offers NPN, which node removed',
  'backend-connect-timeout':
    'on a timeout Hitch logs and keeps the client waiting; unhitch closes it cleanly',
  'client-verify':
    'a certificate from another CA fails the handshake without an unknown_ca alert (node checks the chain after the handshake)',
  'ocsp-verify-staple':
    'the responder must chain to the CA store (SSL_CERT_FILE), not to a certificate in the pem-file; revoked responses are stapled too',
  daemon: 'exits 0 once every worker listens, not once the sockets are bound',
  'log-level': '0 means errors only, not silence',
  'log-filename': 'a file that cannot be opened exits 1 (Hitch: 2); missing directories are made',
  syslog: 'tag unhitch, sent through logger(1) (node has no datagram socket)',
  chroot: 'not carried out (node has no chroot); reported at start',
  'recv-bufsize': 'not carried out (node cannot set SO_RCVBUF); reported at start',
  'send-bufsize': 'not carried out (node cannot set SO_SNDBUF); reported at start',
  'tcp-fastopen': 'not carried out (node has no TCP_FASTOPEN); reported at start',
  'enable-tcp-fastopen': 'not carried out (node has no TCP_FASTOPEN); reported at start',
  client: "refused: Hitch's client mode is not implemented",
});

export function hitchDifference(name: string): string | undefined {
  return Object.hasOwn(HITCH_DIFFERENCES, name) ? HITCH_DIFFERENCES[name] : undefined;
}
