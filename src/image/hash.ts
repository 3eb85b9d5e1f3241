/**
 * Chunk hashes: raw SHA-256 digests (32 bytes), hashed natively. Hex is for
 * people and JSON; everything hot stays binary.
 */
export const HASH_BYTES = 32;

/** A chunk's SHA-256 digest. */
export type Hash = Uint8Array;
/** A hash as bytes or as 64 lowercase hex digits. */
export type HashLike = Uint8Array | string;

/**
 * The marker for a chunk that is all zeros: recorded in manifests, never
 * stored. No real SHA-256 digest is all zeros (finding one is a preimage
 * attack), so it cannot collide with a stored chunk.
 */
export const ZERO_HASH: Hash = new Uint8Array(HASH_BYTES);

const HEX_RE = /^[0-9a-f]{64}$/;

/** SHA-256 of `bytes`, natively. */
export function sha256(bytes: Uint8Array): Hash {
  // Into a plain Uint8Array: wrapping the returned Buffer's .buffer cost as much as hashing a page.
  return Bun.CryptoHasher.hash("sha256", bytes, new Uint8Array(HASH_BYTES)) as Uint8Array;
}

/** SHA-256 of `bytes` into `out` (32 bytes), which it returns: no allocation on a hot path. */
export function sha256Into(bytes: Uint8Array, out: Uint8Array): Uint8Array {
  Bun.CryptoHasher.hash("sha256", bytes, out);
  return out;
}

export function toHex(hash: Uint8Array): string {
  return Buffer.from(hash.buffer, hash.byteOffset, hash.byteLength).toString("hex");
}

export function isHexHash(s: string): boolean {
  return HEX_RE.test(s);
}

/** Parse 64 hex digits; throws on anything else. */
export function fromHex(hex: string): Hash {
  if (!HEX_RE.test(hex)) throw new TypeError(`Invalid chunk hash "${hex.slice(0, 80)}": expected 64 lowercase hex digits`);
  const b = Buffer.from(hex, "hex");
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** Bytes of a hash given either way; validates length. */
export function hashBytes(h: HashLike): Hash {
  if (typeof h === "string") return fromHex(h);
  if (h.byteLength !== HASH_BYTES) throw new TypeError(`Invalid chunk hash: expected ${HASH_BYTES} bytes, got ${h.byteLength}`);
  return h;
}

/** Hex of a hash given either way. */
export function hashHex(h: HashLike): string {
  return typeof h === "string" ? h : toHex(h);
}

export function hashEquals(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  return Buffer.compare(a, b) === 0;
}

export function isZeroHash(h: HashLike): boolean {
  if (typeof h === "string") return h === ZERO_HEX;
  return h.byteLength === HASH_BYTES && Buffer.compare(h, ZERO_HASH) === 0;
}

export const ZERO_HEX = "0".repeat(64);

const ZEROS = new Uint8Array(1 << 20);

/** True when every byte is zero (native memcmp in 1 MiB strides). */
export function isAllZero(bytes: Uint8Array): boolean {
  for (let off = 0; off < bytes.byteLength; off += ZEROS.byteLength) {
    const n = Math.min(ZEROS.byteLength, bytes.byteLength - off);
    if (Buffer.compare(bytes.subarray(off, off + n), ZEROS.subarray(0, n)) !== 0) return false;
  }
  return true;
}
