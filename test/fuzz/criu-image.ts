/**
 * CRIU's image files as autopod exports them: a magic (two u32 LE for most
 * images, one for the inventory), then entries of `u32 LE size` + a protobuf
 * message, sometimes followed by raw payload (kept as the tail). Files that are
 * not of this shape (pages, tar.gz of tmpfs) are raw bytes.
 */
import { concatBytes, encodeMessage, mutateMessage, type PbField, parseMessage } from "./protobuf.ts";
import { clone, type Rng } from "./rng.ts";

const IMG_COMMON_MAGIC = 0x54564319;
const IMG_SERVICE_MAGIC = 0x55105940;
const INVENTORY_MAGIC = 0x58313116;

export interface CriuImage {
  header: Uint8Array;
  entries: Array<{ fields: PbField[]; sizeDelta?: number }>;
  /** Bytes after the last entry that parsed (payload CRIU reads raw, or nothing). */
  tail: Uint8Array;
}

/** Parse a CRIU image; null when the file has no CRIU magic (raw data). */
export function parseCriuImage(b: Uint8Array): CriuImage | null {
  if (b.byteLength < 4) return null;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const m = dv.getUint32(0, true);
  let at: number;
  if (m === IMG_COMMON_MAGIC || m === IMG_SERVICE_MAGIC) at = 8;
  else if (m === INVENTORY_MAGIC) at = 4;
  else return null;
  if (at > b.byteLength) return null;
  const img: CriuImage = { header: b.slice(0, at), entries: [], tail: new Uint8Array() };
  while (at + 4 <= b.byteLength) {
    const size = dv.getUint32(at, true);
    if (size > b.byteLength - at - 4) break;
    const fields = parseMessage(b.subarray(at + 4, at + 4 + size));
    if (fields === null) break;
    img.entries.push({ fields });
    at += 4 + size;
  }
  img.tail = b.slice(at);
  return img;
}

export function encodeCriuImage(img: CriuImage): Uint8Array {
  const parts: Uint8Array[] = [img.header];
  for (const e of img.entries) {
    const body = encodeMessage(e.fields);
    const size = new Uint8Array(4);
    new DataView(size.buffer).setUint32(0, Math.max(0, body.byteLength + (e.sizeDelta ?? 0)) >>> 0, true);
    parts.push(size, body);
  }
  parts.push(img.tail);
  return concatBytes(parts);
}

/** One mutation of a CRIU image's entries (or raw bytes when it has none); returns the new bytes and what was done. */
export function mutateCriuFile(bytes: Uint8Array, rng: Rng, strings: readonly string[]): { bytes: Uint8Array; what: string } {
  const img = parseCriuImage(bytes);
  if (img === null || img.entries.length === 0 || rng.chance(0.05)) return mutateRaw(bytes, rng);
  const k = rng.below(100);
  if (k < 6) {
    const i = rng.below(img.entries.length);
    img.entries[i]!.sizeDelta = rng.pick([-1, 1, -4, 4096, 0x7fff_ffff, -0x7fff_ffff]);
    return { bytes: encodeCriuImage(img), what: `entry ${i} size lies by ${img.entries[i]!.sizeDelta}` };
  }
  if (k < 10) {
    const i = rng.below(img.entries.length);
    img.entries.splice(i, 1);
    return { bytes: encodeCriuImage(img), what: `entry ${i} dropped` };
  }
  if (k < 14) {
    const i = rng.below(img.entries.length);
    img.entries.splice(i, 0, clone(img.entries[i]!));
    return { bytes: encodeCriuImage(img), what: `entry ${i} duplicated` };
  }
  if (k < 17) {
    img.header = img.header.slice();
    img.header[rng.below(img.header.byteLength)]! ^= 1 << rng.below(8);
    return { bytes: encodeCriuImage(img), what: "magic bit flip" };
  }
  const i = rng.below(img.entries.length);
  const what = mutateMessage(img.entries[i]!.fields, rng, strings);
  return { bytes: encodeCriuImage(img), what: `entry ${i}: ${what}` };
}

/** Byte-level mutations for files with no structure we know. */
export function mutateRaw(bytes: Uint8Array, rng: Rng): { bytes: Uint8Array; what: string } {
  const b = bytes.slice();
  const k = rng.below(4);
  if (b.byteLength === 0 || k === 0) return { bytes: concatBytes([b, rng.bytes(1 + rng.below(32))]), what: "raw bytes appended" };
  if (k === 1) return { bytes: b.slice(0, rng.below(b.byteLength)), what: "raw truncation" };
  const n = 1 + rng.below(8);
  for (let j = 0; j < n; j++) b[rng.below(b.byteLength)] = k === 2 ? rng.u32() & 0xff : b[rng.below(b.byteLength)]! ^ (1 << rng.below(8));
  return { bytes: b, what: `raw ${n} byte changes` };
}
