/** Byte arrays in pieces: joining them, and skipping a prefix without copying. */

/** The bytes of `parts` in one array (the part itself when there is one). */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1 && parts[0]) return parts[0];
  let length = 0;
  for (const p of parts) length += p.byteLength;
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** The bytes of `pieces` from `skip` on (sharing their memory). */
export function skipBytes(pieces: readonly Uint8Array[], skip: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const piece of pieces) {
    if (skip >= piece.byteLength) skip -= piece.byteLength;
    else {
      out.push(skip > 0 ? piece.subarray(skip) : piece);
      skip = 0;
    }
  }
  return out;
}
