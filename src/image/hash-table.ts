/**
 * A set of 32-byte hashes with a location per entry, for a writer's pending
 * and pinned chunks: hundreds of thousands of pages per checkpoint, where a
 * Map keyed by hex strings spends more time making strings than hashing.
 * Open addressing on the hash's own first bytes (already uniform), the full
 * 32 bytes compared on a hit; entries stay in insertion order.
 */
import { HASH_BYTES } from "./hash.ts";

export class HashTable {
  #hashes: Uint8Array;
  #pack: Int32Array;
  #offset: Float64Array;
  #length: Int32Array;
  /** Entry index + 1 per slot; 0 is empty. */
  #slots: Int32Array;
  #size = 0;

  /** `expected`: entries to make room for up front. */
  constructor(expected = 1024) {
    const cap = Math.max(16, expected);
    this.#hashes = new Uint8Array(cap * HASH_BYTES);
    this.#pack = new Int32Array(cap);
    this.#offset = new Float64Array(cap);
    this.#length = new Int32Array(cap);
    let slots = 64;
    while (slots < cap * 2) slots *= 2;
    this.#slots = new Int32Array(slots);
  }

  get size(): number {
    return this.#size;
  }

  /** Make room for `n` entries in all, so that adding them does not grow the table step by step. */
  reserve(n: number): void {
    while (this.#pack.length < n) this.#growEntries();
    if (n * 2 > this.#slots.length) {
      let slots = this.#slots.length;
      while (slots < n * 2) slots *= 2;
      this.#rehash(slots);
    }
  }

  /** The entry index of `h` (32 bytes at `at` of `src`), or -1. */
  indexOf(src: Uint8Array, at = 0): number {
    const mask = this.#slots.length - 1;
    let s = slotOf(src, at) & mask;
    for (;;) {
      const e = this.#slots[s]!;
      if (e === 0) return -1;
      if (this.#equals(e - 1, src, at)) return e - 1;
      s = (s + 1) & mask;
    }
  }

  has(src: Uint8Array, at = 0): boolean {
    return this.indexOf(src, at) >= 0;
  }

  /** Add `h` unless present; returns its entry index and whether it was added. */
  add(src: Uint8Array, at = 0, pack = 0, offset = 0, length = 0): { index: number; added: boolean } {
    if ((this.#size + 1) * 2 > this.#slots.length) this.#grow();
    const mask = this.#slots.length - 1;
    let s = slotOf(src, at) & mask;
    for (;;) {
      const e = this.#slots[s]!;
      if (e === 0) break;
      if (this.#equals(e - 1, src, at)) return { index: e - 1, added: false };
      s = (s + 1) & mask;
    }
    const i = this.#size++;
    if (i >= this.#pack.length) this.#growEntries();
    const h = this.#hashes;
    const o = i * HASH_BYTES;
    for (let k = 0; k < HASH_BYTES; k++) h[o + k] = src[at + k]!;
    this.#pack[i] = pack;
    this.#offset[i] = offset;
    this.#length[i] = length;
    this.#slots[s] = i + 1;
    return { index: i, added: true };
  }

  /** The entry's hash (a view: copy it to keep it past clear()). */
  hashAt(i: number): Uint8Array {
    return this.#hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES);
  }

  locationAt(i: number): { pack: number; offset: number; length: number } {
    return { pack: this.#pack[i]!, offset: this.#offset[i]!, length: this.#length[i]! };
  }

  /** Every entry's hash, in insertion order (views). */
  *hashes(): Generator<Uint8Array> {
    for (let i = 0; i < this.#size; i++) yield this.hashAt(i);
  }

  /** Every entry as [hash, pack, offset, length] columns (views over the table's arrays). */
  columns(): { hashes: Uint8Array; pack: Int32Array; offset: Float64Array; length: Int32Array; size: number } {
    const n = this.#size;
    return {
      hashes: this.#hashes.subarray(0, n * HASH_BYTES),
      pack: this.#pack.subarray(0, n),
      offset: this.#offset.subarray(0, n),
      length: this.#length.subarray(0, n),
      size: n,
    };
  }

  clear(): void {
    this.#slots.fill(0);
    this.#size = 0;
  }

  #equals(i: number, src: Uint8Array, at: number): boolean {
    const h = this.#hashes;
    const o = i * HASH_BYTES;
    for (let k = 0; k < HASH_BYTES; k++) if (h[o + k] !== src[at + k]) return false;
    return true;
  }

  #grow(): void {
    this.#rehash(this.#slots.length * 2);
  }

  #rehash(size: number): void {
    const slots = new Int32Array(size);
    const mask = slots.length - 1;
    for (let i = 0; i < this.#size; i++) {
      let s = slotOf(this.#hashes, i * HASH_BYTES) & mask;
      while (slots[s] !== 0) s = (s + 1) & mask;
      slots[s] = i + 1;
    }
    this.#slots = slots;
  }

  #growEntries(): void {
    const cap = this.#pack.length * 2;
    const hashes = new Uint8Array(cap * HASH_BYTES);
    hashes.set(this.#hashes);
    this.#hashes = hashes;
    const pack = new Int32Array(cap);
    pack.set(this.#pack);
    this.#pack = pack;
    const offset = new Float64Array(cap);
    offset.set(this.#offset);
    this.#offset = offset;
    const length = new Int32Array(cap);
    length.set(this.#length);
    this.#length = length;
  }
}

/** Random per process, so that chunks crafted to share a slot need equal first 8 bytes of SHA-256 (2^64 work). */
const SALT = crypto.getRandomValues(new Uint32Array(2));

function slotOf(src: Uint8Array, at: number): number {
  const a = src[at]! | (src[at + 1]! << 8) | (src[at + 2]! << 16) | (src[at + 3]! << 24);
  const b = src[at + 4]! | (src[at + 5]! << 8) | (src[at + 6]! << 16) | (src[at + 7]! << 24);
  return (Math.imul(a ^ SALT[0]!, 0x9e3779b1) ^ Math.imul(b ^ SALT[1]!, 0x85ebca6b)) >>> 0;
}
