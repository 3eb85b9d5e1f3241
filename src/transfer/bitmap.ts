/** Bitmaps over lists of chunks: bit i (LSB first in byte i/8) stands for chunk i. */
import { HASH_BYTES } from "../image/hash.ts";

/**
 * How many hashes one "which do you lack?" question may carry (32 MiB of hashes: a 4 GiB image's pages);
 * a longer list is asked in several questions (askInBatches in manifest-parent.ts).
 */
export const MAX_HASHES_PER_QUERY = 1 << 20;
/** How many chunks an image pulled from a peer may have, its selection a bitmap over them (2 MiB: 64 GiB of pages). */
export const MAX_CHUNKS_PER_SELECTION = 1 << 24;

export function bitmapOf(n: number, isSet: (i: number) => boolean): Uint8Array {
  const b = new Uint8Array(new ArrayBuffer(Math.ceil(n / 8)));
  for (let i = 0; i < n; i++) if (isSet(i)) b[i >> 3]! |= 1 << (i & 7);
  return b;
}

export function bitIsSet(b: Uint8Array, i: number): boolean {
  return (b[i >> 3]! & (1 << (i & 7))) !== 0;
}

export function countBits(b: Uint8Array): number {
  let n = 0;
  for (const x of b) {
    let v = x;
    while (v) {
      v &= v - 1;
      n++;
    }
  }
  return n;
}

/** Split a concatenation of hashes into views (no copies). */
export function hashViews(all: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = new Array(all.byteLength / HASH_BYTES);
  for (let i = 0; i < out.length; i++) out[i] = all.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES);
  return out;
}
