/**
 * A local file whose chunks were just hashed (ChunkWorkers.hashFile), as
 * ChunkWriter.putHashedFile stores it: which of its chunks are candidates,
 * what share of them a sample says the store lacks (whether to adopt the
 * file whole), and the copy of those it lacks, read in runs of neighbours,
 * each verified against its hash.
 */
import fs from "node:fs";
import { HASH_BYTES, hashEquals, sha256, toHex } from "../image/hash.ts";
import { readAt } from "./_pack.ts";
import type { FileHashes } from "./chunk-workers.ts";
import { ChunkMismatchError } from "./errors.ts";

/** Candidates the sample of sampledNewShare takes at most. */
const SAMPLE = 256;
/** A copy reads neighbouring chunks this much at a time. */
const COPY_RUN_BYTES = 4 << 20;

/** The length of chunk `i` of the file (the last may be short). */
function lengthOf(fh: FileHashes, i: number): number {
  return Math.min(fh.chunkSize, fh.size - i * fh.chunkSize);
}

/**
 * The file's chunks that are neither zeros, nor flagged in `known`, nor held
 * (`isHeld`, given the hashes and an offset): their indexes and bytes.
 */
export function candidatesOf(
  fh: FileHashes,
  known: Uint8Array | undefined,
  isHeld: (hashes: Uint8Array, at: number) => boolean,
): { cand: number[]; candBytes: number } {
  const n = fh.zero.length;
  const cand: number[] = [];
  let candBytes = 0;
  for (let i = 0; i < n; i++) {
    if (fh.zero[i] === 1 || known?.[i] === 1) continue;
    const at = i * HASH_BYTES;
    if (isHeld(fh.hashes, at)) continue;
    cand.push(i);
    candBytes += lengthOf(fh, i);
  }
  return { cand, candBytes };
}

/** The share of the candidates that `missing` (the store's) says are lacking, from a sample of them. */
export function sampledNewShare(fh: FileHashes, cand: readonly number[], missing: (hashes: Uint8Array[]) => Uint8Array[]): number {
  const sample: Uint8Array[] = [];
  const step = Math.max(1, Math.floor(cand.length / SAMPLE));
  for (let k = 0; k < cand.length; k += step) sample.push(fh.hashes.subarray(cand[k]! * HASH_BYTES, (cand[k]! + 1) * HASH_BYTES));
  return sample.length === 0 ? 0 : missing(sample).length / sample.length;
}

/**
 * Read chunks `take` (ascending indexes) of `file`, runs of neighbours at
 * once, and give each to `put` with its hash once it matches it; throws
 * ChunkMismatchError for one that does not (the file changed).
 */
export function copyChunks(file: string, fh: FileHashes, take: readonly number[], put: (hash: Uint8Array, chunk: Uint8Array) => void): void {
  const cs = fh.chunkSize;
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  try {
    const maxRun = Math.max(1, Math.floor(COPY_RUN_BYTES / cs));
    for (let k = 0; k < take.length; ) {
      let end = k + 1;
      while (end < take.length && take[end] === take[end - 1]! + 1 && end - k < maxRun) end++;
      const first = take[k]!;
      const last = take[end - 1]!;
      const bytes = readAt(fd, last * cs + lengthOf(fh, last) - first * cs, first * cs);
      for (let j = k; j < end; j++) {
        const i = take[j]!;
        const chunk = bytes.subarray((i - first) * cs, (i - first) * cs + lengthOf(fh, i));
        const want = fh.hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES);
        if (chunk.byteLength !== lengthOf(fh, i) || !hashEquals(sha256(chunk), want)) {
          throw new ChunkMismatchError([toHex(want)]);
        }
        put(want, chunk);
      }
      k = end;
    }
  } finally {
    fs.closeSync(fd);
  }
}
