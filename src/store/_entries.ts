/**
 * What the store's parts (the store, its writers, the pending index) share
 * about index entries: the limit on a chunk, the zero marker at an offset, and
 * the order in which entries go into the index.
 */
import { HASH_BYTES } from "../image/hash.ts";

/** The largest chunk the store accepts. */
export const MAX_CHUNK_BYTES = 16 << 20;

/** Whether the 32 bytes at `at` are the zero marker. */
export function isZeroAt(b: Uint8Array, at: number): boolean {
  for (let k = 0; k < HASH_BYTES; k++) if (b[at + k] !== 0) return false;
  return true;
}

/** Indices 0..n-1 ordered by their hash's first 29 bits (a native sort of packed keys). */
export function sortedByHash(hashes: Uint8Array, n: number): ArrayLike<number> {
  if (n < 2 || n >= 1 << 24) return Array.from({ length: n }, (_, i) => i);
  const keys = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const o = i * HASH_BYTES;
    const prefix = ((hashes[o]! << 21) | (hashes[o + 1]! << 13) | (hashes[o + 2]! << 5) | (hashes[o + 3]! >>> 3)) >>> 0;
    keys[i] = prefix * 16777216 + i;
  }
  keys.sort();
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = keys[i]! % 16777216;
  return out;
}
