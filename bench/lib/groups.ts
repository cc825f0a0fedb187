/**
 * Key-exchange groups in the handshake benches: what a client offers and how the group the
 * server chose is named in their rows.
 */

/** What a browser offers (Chrome, Firefox): the hybrid first, X25519 for older servers. */
export const HYBRID_OFFER = 'X25519MLKEM768:X25519';

/**
 * Node 22 names only ECDH and DH groups: for the X25519MLKEM768 hybrid its
 * getEphemeralKeyInfo() returns an empty object, counted under this name.
 */
export const UNNAMED_GROUP = 'unnamed (node 22 names ECDH/DH groups only)';

/** How this runtime's rows name the hybrid when the server chose it. */
export const HYBRID_AS_NAMED =
  Number(process.versions.node.split('.')[0]) >= 24 ? 'X25519MLKEM768' : UNNAMED_GROUP;

/** The groups the server chose over some runs (each a count by group), sorted, for a row. */
export function groupsChosen(
  counts: readonly (Readonly<Record<string, number>> | undefined)[],
): string {
  return [...new Set(counts.flatMap((count) => Object.keys(count ?? {})))].sort().join(', ');
}
