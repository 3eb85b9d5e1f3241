/**
 * Files received in place: files whose chunks arrive one by one, in any
 * order (CRIU page images from a peer), each written into a raw pack laid out
 * as the file (ChunkWriter.receiveFile, putInFile, sealFile). Here: a
 * writer's received files, the checks on what is written into them, and the
 * run of neighbouring chunks each buffers so that they go to disk in one write.
 */
import { HASH_BYTES, hashEquals, sha256, toHex } from "../image/hash.ts";
import { MAX_CHUNK_BYTES, isZeroAt } from "./_entries.ts";
import { type OpenPack, type PackAppender, writevAll } from "./_pack.ts";

/**
 * A file arriving chunk by chunk (a page image from a peer), written in place
 * into a raw pack laid out as the file: see ChunkWriter.receiveFile.
 */
export interface ReceivedFile {
  readonly pack: OpenPack;
  /** The file's chunk list (the manifest's: all zeros marks a chunk of zeros). */
  readonly chunks: Uint8Array;
  readonly size: number;
  readonly chunkSize: number;
  /** 1 where the chunk's bytes are written. */
  readonly filled: Uint8Array;
  /** A run of neighbouring chunks not written yet: its first index and bytes. */
  run: { first: number; parts: Uint8Array[]; bytes: number } | null;
}

/** A received file's buffered run is written out at this many bytes. */
const RECEIVE_RUN_BYTES = 1 << 20;

/** A writer's files received in place, in raw packs of its appender. */
export class ReceivedFiles {
  readonly #appender: PackAppender;
  readonly #newRawPackId: () => number;
  readonly #files: ReceivedFile[] = [];

  constructor(appender: PackAppender, newRawPackId: () => number) {
    this.#appender = appender;
    this.#newRawPackId = newRawPackId;
  }

  /** A new received file of `size` bytes in chunks of `chunkSize` (`chunks`: its chunk list). */
  open(chunks: Uint8Array, size: number, chunkSize: number): ReceivedFile {
    const n = chunks.byteLength / HASH_BYTES;
    if (chunkSize > MAX_CHUNK_BYTES || n !== Math.ceil(size / chunkSize)) {
      throw new RangeError(`A received file of ${size} bytes in chunks of ${chunkSize} cannot have ${n} chunks`);
    }
    const pack = this.#appender.createRaw(this.#newRawPackId, size, chunkSize);
    const f: ReceivedFile = { pack, chunks, size, chunkSize, filled: new Uint8Array(n), run: null };
    this.#files.push(f);
    return f;
  }

  /** Write the chunk `hash` (verified by the caller) at each of `positions`; throws unless it is the file's chunk at each. */
  write(f: ReceivedFile, hash: Uint8Array, bytes: Uint8Array, positions: readonly number[]): void {
    for (const i of positions) {
      const len = Math.min(f.chunkSize, f.size - i * f.chunkSize);
      if (!hashEquals(f.chunks.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES), hash) || len !== bytes.byteLength) {
        throw new RangeError(`Chunk ${toHex(hash)} is not chunk ${i} of the received file`);
      }
    }
    for (const i of positions) writeInFile(f, i, bytes);
  }

  /** Write every chunk of the file not received, as `get` gives it (verified); the file is then whole. */
  seal(f: ReceivedFile, get: (hash: Uint8Array) => Uint8Array): void {
    flushRun(f);
    const n = f.filled.length;
    for (let i = 0; i < n; i++) {
      if (f.filled[i] === 1 || isZeroAt(f.chunks, i * HASH_BYTES)) continue;
      const bytes = get(f.chunks.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES));
      writeInFile(f, i, bytes);
    }
    flushRun(f);
    f.pack.digest = sha256(f.chunks);
  }

  /** Write out every file's buffered run. */
  flush(): void {
    for (const f of this.#files) flushRun(f);
  }
}

/** Write chunk `i` of the file (once): added to the buffered run when it follows it, else after writing the run out. */
function writeInFile(f: ReceivedFile, i: number, bytes: Uint8Array): void {
  if (f.filled[i] === 1) return;
  f.filled[i] = 1;
  const run = f.run;
  if (run !== null && run.first + run.parts.length === i && run.bytes < RECEIVE_RUN_BYTES) {
    run.parts.push(bytes);
    run.bytes += bytes.byteLength;
    return;
  }
  flushRun(f);
  f.run = { first: i, parts: [bytes], bytes: bytes.byteLength };
}

/** Write out the file's buffered run, if any. */
function flushRun(f: ReceivedFile): void {
  const run = f.run;
  if (run === null) return;
  f.run = null;
  writevAll(f.pack.fd, run.parts, run.first * f.chunkSize);
  f.pack.isDirty = true;
}
