/**
 * One self-contained, streamable file per image (docs/image-format.md):
 *
 *   header   "APODIMG\0", u32 BE format version, u32 BE flags (1: signed, 2: manifest delta, 4: chunk indexes)
 *   manifest u32 BE length, 32-byte SHA-256 (the image id), msgpack bytes
 *   [delta]  instead: u32 BE delta length, 32-byte SHA-256 (the image id), 32-byte id of the
 *            parent image whose manifest the delta applies to, the delta (src/image/manifest-delta.ts)
 *   [signed] 32-byte Ed25519 public key, 64-byte signature of the image id (src/trust/)
 *   chunks   "C", 32-byte SHA-256, u32 BE length, bytes     (each distinct stored chunk once)
 *            [chunk indexes] instead: "c", u32 BE index of the chunk among the manifest's
 *            distinct chunks (uniqueChunkRefs), bytes of the length the manifest says
 *   trailer  "T", u64 BE chunk count, u64 BE chunk bytes, 32-byte final hash
 *
 * The final hash is SHA-256 over the header, the manifest hash (and the
 * parent's id), every frame's hash and length, and the two counts (and the
 * signature block, when there is one): with each chunk checked against its
 * own hash it covers every byte, without hashing the data twice.
 *
 * Between peers the manifest travels as a delta against an image the
 * receiver has (the same pod's previous one) and chunks by index: the next
 * image of a pod then costs little more than its changed pages.
 *
 * This file holds what the writer (export.ts) and the reader (import.ts)
 * share: the format's constants and flags, its errors, and u32 coding.
 */
import { InvalidArgumentError } from "../errors.ts";
import { HASH_BYTES } from "../image/hash.ts";
import { SIGNATURE_BLOCK_BYTES } from "../trust/image-signature.ts";

export const EXPORT_MAGIC = "APODIMG\0";
export const EXPORT_VERSION = 1;
export const HEADER_BYTES = 16;
/** The trailer: "T", chunk count, chunk bytes, final hash. */
export const TRAILER_BYTES = 1 + 16 + HASH_BYTES;
/** An export's bytes besides its manifest and frames: header, manifest length and hash, signature block (at most), trailer. */
export const EXPORT_FIXED_BYTES = HEADER_BYTES + 4 + HASH_BYTES + SIGNATURE_BLOCK_BYTES + TRAILER_BYTES;
/** Each chunk's frame head: "C", hash, length. */
export const EXPORT_FRAME_BYTES = 1 + 32 + 4;
/** Each chunk's frame head with chunk indexes (flag 4): "c", index. */
export const EXPORT_INDEX_FRAME_BYTES = 1 + 4;
export const FRAME_CHUNK = 0x43; // "C"
export const FRAME_CHUNK_INDEX = 0x63; // "c"
export const FRAME_TRAILER = 0x54; // "T"
/** Frames are written, and an import's chunks verified, about this many bytes at a time. */
export const BATCH_BYTES = 1 << 20;
/** Header flag: a signature block follows the manifest. */
export const FLAG_SIGNED = 1;
/** Header flag: the manifest is a delta against a parent image's. */
export const FLAG_MANIFEST_DELTA = 2;
/** Header flag: chunk frames name their chunk by index ("c"), not by hash ("C"). */
export const FLAG_CHUNK_INDEXES = 4;
export const KNOWN_FLAGS = FLAG_SIGNED | FLAG_MANIFEST_DELTA | FLAG_CHUNK_INDEXES;

/** The export file is truncated, corrupt or hostile; the store was not changed. */
export class InvalidExportError extends InvalidArgumentError {
  override name = "InvalidExportError";
}

/** The export's manifest is a delta against an image this host does not have; the store was not changed. */
export class MissingParentError extends InvalidExportError {
  override name = "MissingParentError";
}

/** Write `v` as a u32 BE at `at` (no DataView per frame). */
export function setUint32(b: Uint8Array, at: number, v: number): void {
  b[at] = v >>> 24;
  b[at + 1] = (v >>> 16) & 0xff;
  b[at + 2] = (v >>> 8) & 0xff;
  b[at + 3] = v & 0xff;
}

/** The u32 BE at `at` (no DataView per frame). */
export function getUint32(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}
