/**
 * Page images of an import written in place. An image this host checkpointed
 * keeps each CRIU page image whole (the store adopts the file as a raw pack),
 * and a restore links it instead of copying 1 GiB of pages. An image that
 * arrives from a peer or a file comes chunk by chunk; without this its pages
 * landed in ordinary packs and every restore of it copied them all. Here each
 * page image whose chunks are mostly new to this host is received into a raw
 * pack laid out as the file (ChunkWriter.receiveFile), so the restore links it
 * just the same.
 */
import path from "node:path";
import type { ChunkWriter, ReceivedFile } from "../store/chunk-writer.ts";
import { HASH_BYTES, type Hash, isZeroHash, toHex } from "../image/hash.ts";
import { chunkCount, chunkHash, type FileEntry, type Manifest, PAGE_SIZE } from "../image/manifest.ts";
import { BULK_FILE_BYTES } from "./tree.ts";

const PAGES = /^pages-\d+\.img$/;
/** Received in place when at least this share of the file's chunks is new here (as ChunkWriter.putHashedFile adopts). */
const NEW_SHARE = 0.5;
const SAMPLE = 256;

/** Where each chunk of the page images received in place goes. */
export class ReceivedPages {
  readonly #writer: ChunkWriter;
  readonly #files: ReceivedFile[] = [];
  /** By hex hash: the files, and the chunk indexes in each, that hold the chunk. */
  readonly #places = new Map<string, Array<{ file: ReceivedFile; positions: number[] }>>();

  /** The page images of `manifest` that this import writes in place. */
  constructor(manifest: Manifest, writer: ChunkWriter) {
    this.#writer = writer;
    for (const e of manifest.criu) {
      if (!isReceivedInPlace(e) || !isMostlyNew(e, writer)) continue;
      const file = writer.receiveFile(e.chunks, e.size, e.chunkSize);
      this.#files.push(file);
      const n = chunkCount(e);
      for (let i = 0; i < n; i++) {
        const h = chunkHash(e, i);
        if (isZeroHash(h)) continue;
        const hex = toHex(h);
        let list = this.#places.get(hex);
        if (list === undefined) {
          list = [];
          this.#places.set(hex, list);
        }
        const last = list[list.length - 1];
        if (last?.file === file) last.positions.push(i);
        else list.push({ file, positions: [i] });
      }
    }
  }

  /** Page images received in place. */
  get files(): number {
    return this.#files.length;
  }

  /** Store a verified-on-write chunk in the page images that hold it; false when none does (the caller stores it). */
  put(hex: string, hash: Hash, bytes: Uint8Array): boolean {
    const places = this.#places.get(hex);
    if (places === undefined) return false;
    for (const p of places) this.#writer.putInFile(p.file, { hash, bytes }, p.positions);
    return true;
  }

  /** Every chunk arrived or is known stored: complete each file with the chunks that did not travel. */
  seal(): void {
    for (const f of this.#files) this.#writer.sealFile(f);
  }
}

/** A CRIU page image big enough to be linked at restore, and root's alone (as tree.ts links only such files). */
function isReceivedInPlace(e: FileEntry): boolean {
  return (
    e.type === "file" &&
    PAGES.test(path.posix.basename(e.path)) &&
    e.size >= BULK_FILE_BYTES &&
    e.chunkSize === PAGE_SIZE &&
    e.uid === 0 &&
    e.gid === 0 &&
    (e.mode & 0o7022) === 0
  );
}

/** Whether most of the file's chunks are new here, from an even sample of them. */
function isMostlyNew(e: FileEntry, writer: ChunkWriter): boolean {
  const n = chunkCount(e);
  const step = Math.max(1, Math.floor(n / SAMPLE));
  const sample: Uint8Array[] = [];
  let zeros = 0;
  for (let i = 0; i < n; i += step) {
    const h = e.chunks.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES);
    if (isZeroHash(h)) zeros++;
    else sample.push(h);
  }
  if (sample.length === 0) return false;
  return writer.missing(sample).length >= NEW_SHARE * (sample.length + zeros);
}
