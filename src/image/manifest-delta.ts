/**
 * A manifest sent as a delta against another manifest the receiver holds (the
 * same pod's previous image): most of a manifest is chunk hash lists, and the
 * next image of a pod changes only the hashes of the pages that changed, so
 * the delta is those hashes and a few copy instructions instead of 8 MB per
 * GiB of memory.
 *
 * Format (all lengths in bytes):
 *   u32 BE  length of the manifest it rebuilds
 *   ops     until that length is reached, each one of
 *           0x01 COPY  varint offset in the parent, varint length
 *           0x02 ADD   varint length, the bytes
 * Varints are unsigned LEB128 of at most 5 bytes. Applying checks every op
 * against the parent's and the declared length, and refuses trailing bytes;
 * the caller checks the result's hash against the image id it expects.
 */
import { InvalidArgumentError } from "../errors.ts";
import { LIMITS } from "./manifest.ts";

const OP_COPY = 0x01;
const OP_ADD = 0x02;
/** Bytes per block of the parent that a match must start from. */
const BLOCK = 32;
const MULT = 0x01000193;

/** The delta is malformed or hostile, or does not fit its parent; nothing was changed. */
export class InvalidManifestDeltaError extends InvalidArgumentError {
  override name = "InvalidManifestDeltaError";
}

/** A delta that rebuilds `target` from `parent` (exact bytes). */
export function encodeManifestDelta(parent: Uint8Array, target: Uint8Array): Uint8Array {
  const out = new ByteSink(4 + (target.byteLength >> 6));
  out.u32(target.byteLength);
  // Index the parent's aligned blocks by a rolling hash; scan the target at every offset.
  const index = new Map<number, number>();
  for (let p = 0; p + BLOCK <= parent.byteLength; p += BLOCK) {
    const h = blockHash(parent, p);
    if (!index.has(h)) index.set(h, p);
  }
  const top = powMult(BLOCK - 1);
  let addFrom = 0;
  let i = 0;
  let h = target.byteLength >= BLOCK ? blockHash(target, 0) : 0;
  while (i + BLOCK <= target.byteLength) {
    const p = index.get(h);
    if (p !== undefined && equalRun(parent, p, target, i, BLOCK)) {
      let t = i;
      let q = p;
      while (t > addFrom && q > 0 && target[t - 1] === parent[q - 1]) {
        t--;
        q--;
      }
      let len = i - t + BLOCK;
      while (t + len < target.byteLength && q + len < parent.byteLength && target[t + len] === parent[q + len]) len++;
      if (t > addFrom) out.add(target.subarray(addFrom, t));
      out.copy(q, len);
      i = t + len;
      addFrom = i;
      if (i + BLOCK <= target.byteLength) h = blockHash(target, i);
      continue;
    }
    if (i + BLOCK >= target.byteLength) break;
    h = (Math.imul((h - Math.imul(target[i]!, top)) | 0, MULT) + target[i + BLOCK]!) | 0;
    i++;
  }
  if (addFrom < target.byteLength) out.add(target.subarray(addFrom));
  return out.bytes();
}

/**
 * Rebuild a manifest from `parent` and `delta`. Every copy must lie inside
 * the parent, every op inside the declared length (at most
 * LIMITS.manifestBytes, so a delta never costs more than a whole manifest
 * could), and nothing may follow the last op. Throws InvalidManifestDeltaError.
 */
export function applyManifestDelta(parent: Uint8Array, delta: Uint8Array): Uint8Array {
  const r = new ByteSource(delta);
  const length = r.u32("the rebuilt length");
  if (length > LIMITS.manifestBytes) {
    throw new InvalidManifestDeltaError(`Invalid manifest delta: it rebuilds ${length} bytes, over the manifest limit of ${LIMITS.manifestBytes}`);
  }
  const out = new Uint8Array(length);
  let at = 0;
  while (at < length) {
    const op = r.byte("an op");
    if (op === OP_COPY) {
      const from = r.varint("a copy's offset");
      const len = r.varint("a copy's length");
      if (len === 0 || len > length - at) throw bad(`a copy of ${len} bytes at byte ${at} of ${length}`);
      if (from > parent.byteLength || len > parent.byteLength - from) {
        throw bad(`a copy of bytes ${from} to ${from + len} of a parent of ${parent.byteLength}`);
      }
      out.set(parent.subarray(from, from + len), at);
      at += len;
    } else if (op === OP_ADD) {
      const len = r.varint("an add's length");
      if (len === 0 || len > length - at) throw bad(`an add of ${len} bytes at byte ${at} of ${length}`);
      out.set(r.take(len, "an add's bytes"), at);
      at += len;
    } else {
      throw bad(`unknown op ${op} at byte ${r.offset - 1}`);
    }
  }
  if (!r.isAtEnd) throw bad(`${delta.byteLength - r.offset} bytes follow the last op`);
  return out;
}

function bad(what: string): InvalidManifestDeltaError {
  return new InvalidManifestDeltaError(`Invalid manifest delta: ${what}`);
}

function blockHash(b: Uint8Array, at: number): number {
  let h = 0;
  for (let k = 0; k < BLOCK; k++) h = (Math.imul(h, MULT) + b[at + k]!) | 0;
  return h;
}

function powMult(n: number): number {
  let x = 1;
  for (let k = 0; k < n; k++) x = Math.imul(x, MULT);
  return x;
}

function equalRun(a: Uint8Array, ai: number, b: Uint8Array, bi: number, n: number): boolean {
  for (let k = 0; k < n; k++) if (a[ai + k] !== b[bi + k]) return false;
  return true;
}

/** A growing byte buffer for the encoder. */
class ByteSink {
  #buf: Uint8Array;
  #len = 0;

  constructor(initial: number) {
    this.#buf = new Uint8Array(Math.max(64, initial));
  }

  u32(v: number): void {
    this.#room(4);
    new DataView(this.#buf.buffer).setUint32(this.#len, v);
    this.#len += 4;
  }

  copy(from: number, len: number): void {
    this.#room(11);
    this.#buf[this.#len++] = OP_COPY;
    this.#varint(from);
    this.#varint(len);
  }

  add(bytes: Uint8Array): void {
    this.#room(6 + bytes.byteLength);
    this.#buf[this.#len++] = OP_ADD;
    this.#varint(bytes.byteLength);
    this.#buf.set(bytes, this.#len);
    this.#len += bytes.byteLength;
  }

  bytes(): Uint8Array {
    return this.#buf.slice(0, this.#len);
  }

  #varint(v: number): void {
    while (v >= 0x80) {
      this.#buf[this.#len++] = (v & 0x7f) | 0x80;
      v = Math.floor(v / 128);
    }
    this.#buf[this.#len++] = v;
  }

  #room(n: number): void {
    if (this.#len + n <= this.#buf.byteLength) return;
    const next = new Uint8Array(Math.max(this.#buf.byteLength * 2, this.#len + n));
    next.set(this.#buf.subarray(0, this.#len));
    this.#buf = next;
  }
}

/** Bounded reads of a delta, naming what was cut short. */
class ByteSource {
  offset = 0;
  readonly #b: Uint8Array;

  constructor(b: Uint8Array) {
    this.#b = b;
  }

  get isAtEnd(): boolean {
    return this.offset === this.#b.byteLength;
  }

  byte(what: string): number {
    if (this.offset >= this.#b.byteLength) throw bad(`it ends inside ${what}`);
    return this.#b[this.offset++]!;
  }

  u32(what: string): number {
    if (this.offset + 4 > this.#b.byteLength) throw bad(`it ends inside ${what}`);
    const v = new DataView(this.#b.buffer, this.#b.byteOffset + this.offset, 4).getUint32(0);
    this.offset += 4;
    return v;
  }

  varint(what: string): number {
    let v = 0;
    let scale = 1;
    for (let k = 0; k < 5; k++) {
      const b = this.byte(what);
      v += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) return v;
      scale *= 128;
    }
    throw bad(`${what} is longer than 5 bytes`);
  }

  take(n: number, what: string): Uint8Array {
    if (n > this.#b.byteLength - this.offset) throw bad(`it ends inside ${what}`);
    const out = this.#b.subarray(this.offset, this.offset + n);
    this.offset += n;
    return out;
  }
}
