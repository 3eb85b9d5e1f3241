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
import { HASH_BYTES, type Hash, isZeroHash } from "../image/hash.ts";
import { HashTable } from "../image/hash-table.ts";
import { chunkCount, type FileEntry, type Manifest, PAGE_SIZE } from "../image/manifest.ts";
import { BULK_FILE_BYTES } from "./tree.ts";

const PAGES = /^pages-\d+\.img$/;
/** Received in place when at least this share of the file's chunks is new here (as ChunkWriter.putHashedFile adopts). */
const NEW_SHARE = 0.5;
const SAMPLE = 256;

/** Where each chunk of the page images received in place goes. */
export class ReceivedPages {
  readonly #writer: ChunkWriter;
  readonly #files: ReceivedFile[] = [];
  /** The first chunk index of each file in one numbering of all their chunks. */
  readonly #bases: number[] = [];
  /** The distinct chunks of the files (binary keys: hex strings cost more than the import's own work). */
  readonly #table: HashTable;
  /** By table entry: the last place (in the one numbering) holding the chunk, -1 for none. */
  readonly #last: Int32Array;
  /** By place: the previous place holding the same chunk, -1 for none. */
  readonly #previous: Int32Array;
  /** The one position of a chunk held once (reused: see put). */
  readonly #one: number[] = [0];

  /** The page images of `manifest` that this import writes in place. */
  constructor(manifest: Manifest, writer: ChunkWriter) {
    this.#writer = writer;
    const chosen = manifest.criu.filter((e) => isReceivedInPlace(e) && isMostlyNew(e, writer));
    let places = 0;
    for (const e of chosen) {
      this.#bases.push(places);
      places += chunkCount(e);
    }
    this.#table = new HashTable(places);
    this.#last = new Int32Array(places).fill(-1);
    this.#previous = new Int32Array(places).fill(-1);
    for (const [k, e] of chosen.entries()) {
      this.#files.push(writer.receiveFile(e.chunks, e.size, e.chunkSize));
      const n = chunkCount(e);
      for (let i = 0; i < n; i++) {
        const at = i * HASH_BYTES;
        if (isZeroAt(e.chunks, at)) continue;
        const { index } = this.#table.add(e.chunks, at);
        const place = this.#bases[k]! + i;
        this.#previous[place] = this.#last[index]!;
        this.#last[index] = place;
      }
    }
  }

  /** Page images received in place. */
  get files(): number {
    return this.#files.length;
  }

  /**
   * Store a chunk in the page images that hold it, verified before it is
   * written (unless `isVerified`: the caller just checked it on a hashing
   * thread); false when none holds it (the caller stores it).
   * `isExpectedNew`: the sender sent only what this store lacked (ChunkWriter.putInFile).
   */
  put(hash: Hash, bytes: Uint8Array, options: { isVerified?: boolean; isExpectedNew?: boolean } = {}): boolean {
    if (this.#files.length === 0) return false;
    const index = this.#table.indexOf(hash);
    if (index < 0) return false;
    const last = this.#last[index]!;
    if (this.#previous[last]! < 0) {
      // Nearly always: one place in one file (no map or lists per chunk, 262,144 times per GiB).
      const k = this.#fileOf(last);
      this.#one[0] = last - this.#bases[k]!;
      this.#writer.putInFile(this.#files[k]!, { hash, bytes }, this.#one, options);
      return true;
    }
    // Places come newest first; group them by file.
    const byFile = new Map<number, number[]>();
    for (let place = last; place >= 0; place = this.#previous[place]!) {
      const k = this.#fileOf(place);
      const list = byFile.get(k);
      if (list === undefined) byFile.set(k, [place - this.#bases[k]!]);
      else list.push(place - this.#bases[k]!);
    }
    for (const [k, positions] of byFile) this.#writer.putInFile(this.#files[k]!, { hash, bytes }, positions.reverse(), options);
    return true;
  }

  /** Write out what the files hold in memory: the buffers the chunks came in may then be reused. */
  flush(): void {
    if (this.#files.length > 0) this.#writer.flushReceived();
  }

  /** Every chunk arrived or is known stored: complete each file with the chunks that did not travel. */
  seal(): void {
    for (const f of this.#files) this.#writer.sealFile(f);
  }

  #fileOf(place: number): number {
    let k = this.#bases.length - 1;
    while (this.#bases[k]! > place) k--;
    return k;
  }
}

function isZeroAt(b: Uint8Array, at: number): boolean {
  for (let k = 0; k < HASH_BYTES; k++) if (b[at + k] !== 0) return false;
  return true;
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
