/**
 * A chunk writer: what one checkpoint, import or transfer writes to the
 * store. It appends to packs of its own and makes its chunks visible only
 * when it commits (fsync the packs, then one index transaction). Until then,
 * and until it is closed, it pins every chunk it wrote or found already
 * stored, so a concurrent gc cannot remove them.
 *
 * Its parts, each in a file of its own: its pins (_writer-pins.ts), files
 * received in place (_received-file.ts), the candidates and copy of a hashed
 * file (_hashed-file.ts), and what a commit writes to the index
 * (_index-commit.ts).
 */
import type { Database } from "bun:sqlite";
import fs from "node:fs";
import { HASH_BYTES, type Hash, type HashLike, hashBytes, hashEquals, hashHex, isZeroHash, sha256, sha256Into, toHex } from "../image/hash.ts";
import { HashTable } from "../image/hash-table.ts";
import { MAX_CHUNK_BYTES } from "./_entries.ts";
import { type ChunkCount, countAdoptedNew, insertEntries, markCommitted, recordPacks } from "./_index-commit.ts";
import { candidatesOf, copyChunks, sampledNewShare } from "./_hashed-file.ts";
import { PackAppender, type RecordLocation, packPath } from "./_pack.ts";
import { type ReceivedFile, ReceivedFiles } from "./_received-file.ts";
import { WriterPins } from "./_writer-pins.ts";
import type { FileHashes } from "./chunk-workers.ts";
import { ChunkMismatchError } from "./errors.ts";
import { type PendingIndex, type RawSegment, addSegment } from "./pending-index.ts";

export type { ReceivedFile } from "./_received-file.ts";

/** A chunk given with the hash it claims to have. */
export interface ClaimedChunk {
  hash: HashLike;
  bytes: Uint8Array;
}

/** What a writer needs of its store: given by ChunkStore.writer(), not part of the store's API. */
export interface WriterHost {
  /** The index database, for the commit transaction. */
  readonly db: Database;
  readonly isDurable: boolean;
  readonly packDir: string;
  readonly maxPackBytes: number;
  readonly pending: PendingIndex;
  newPackId(): number;
  /** A pack id for a file to adopt as a raw pack. */
  newRawPackId(): number;
  has(hash: Uint8Array): boolean;
  missing<T extends HashLike>(hashes: readonly T[]): T[];
  get(hash: Uint8Array): Uint8Array;
  /** A record's bytes read through `fd`, verified against `h` and the index. */
  readRecord(h: Uint8Array, at: RecordLocation, fd: number): Uint8Array;
  /** Remove a pack the writer made and never committed. */
  dropPack(id: number): void;
  writerClosed(w: ChunkWriter): void;
}

/**
 * One checkpoint's, import's or transfer's view for writing: private packs,
 * an uncommitted set of new chunks, and pins on every chunk it touched.
 */
export class ChunkWriter {
  readonly label: string;
  readonly #host: WriterHost;
  readonly #appender: PackAppender;
  /** New chunks, not yet in the index. Those in adopted raw packs may turn out to be stored already (INSERT OR IGNORE at commit). */
  #pending = new HashTable();
  /** Chunks of files adopted whole, not in #pending yet (see #materialize). */
  #segments: RawSegment[] = [];
  /** Chunk lists put whole by putHashedFile: every chunk of each is held (see covers). */
  readonly #covered = new WeakSet<Uint8Array>();
  /** Chunks this writer relies on: gc keeps them (see WriterPins). */
  readonly #pins = new WriterPins();
  /** Files being received in place (receiveFile). */
  readonly #received: ReceivedFiles;
  #isClosed = false;
  /** Bytes of new chunks written (not deduplicated); chunks of adopted files count when commit() finds them new. */
  newBytes = 0;
  newChunks = 0;

  /** Made by ChunkStore.writer(), which passes the store's side of the seam. */
  constructor(host: WriterHost, label: string) {
    this.#host = host;
    this.label = label;
    this.#appender = new PackAppender(host.packDir, host.maxPackBytes, () => host.newPackId());
    this.#received = new ReceivedFiles(this.#appender, () => host.newRawPackId());
  }

  /** Store one chunk (deduplicated); returns its hash. Visible to others after commit(). */
  put(bytes: Uint8Array): Hash {
    const h = sha256(bytes);
    this.#putVerified(h, bytes);
    return h;
  }

  /**
   * Store chunks that arrived with claimed hashes, verifying each first. If any
   * does not match, none is stored and the ChunkMismatchError names them all.
   * `isExpectedNew`: the caller has reason to think the store lacks them (a
   * peer sends only what this store said it lacked), so the store is not
   * asked: one that is stored after all is written again, the index keeps one
   * copy (commit), newChunks counts it only once, and gc reclaims the other.
   * `isVerified`: the caller has just checked every chunk against its hash
   * (ChunkWorkers.verifyChunks, on another thread): not hashed again here.
   */
  putBatch(items: readonly ClaimedChunk[], options: { isExpectedNew?: boolean; isVerified?: boolean } = {}): Hash[] {
    this.#assertOpen();
    const hashes: Hash[] = [];
    const bad: string[] = [];
    const digest = new Uint8Array(HASH_BYTES);
    for (const { hash, bytes } of items) {
      const claimed = hashBytes(hash);
      if (bytes.byteLength > MAX_CHUNK_BYTES || (!options.isVerified && !hashEquals(sha256Into(bytes, digest), claimed))) bad.push(toHex(claimed));
      hashes.push(claimed);
    }
    if (bad.length > 0) throw new ChunkMismatchError(bad);
    // Which of them the store has already: one query for the batch, not one per chunk.
    const ask: Hash[] = [];
    if (!options.isExpectedNew) for (const h of hashes) if (!this.#pending.has(h) && !this.#pins.has(h)) ask.push(h);
    const stored = ask.length > 0 ? new Set(ask) : null;
    if (stored !== null) for (const h of this.#host.missing(ask)) stored.delete(h);
    items.forEach(({ bytes }, i) => {
      const h = hashes[i]!;
      if (this.#pending.has(h) || this.#pins.has(h)) return; // an earlier one of this batch, or held already
      if (stored?.has(h)) {
        this.#pins.add(h);
        return;
      }
      this.#append(h, bytes);
    });
    return hashes;
  }

  /**
   * Store a file of fixed-size chunks whose hashes were just computed from its
   * bytes (ChunkWorkers.hashFile); the file must not change until commit.
   * Chunks of zeros, chunks flagged in `known` (the caller vouches they are
   * stored and pinned them: trustStored), and chunks this writer already has
   * are skipped. When the rest is at least `adoptShare` of the file, the file
   * itself becomes a raw pack (hard-linked, nothing copied; what turns out to
   * be stored already becomes garbage for gc to compact). Otherwise the new
   * chunks are copied into this writer's pack, each re-hashed as it is read.
   */
  putHashedFile(
    file: string,
    fh: FileHashes,
    options: { known?: Uint8Array; adopt?: boolean; adoptShare?: number } = {},
  ): { adopted: boolean; candidates: number } {
    this.#assertOpen();
    const cs = fh.chunkSize;
    // Candidates: neither zeros, nor vouched for, nor held by this writer. (Repeats within the
    // file are left to the pending table's own dedup, or to `local` when copying.)
    const { cand, candBytes } = candidatesOf(fh, options.known, (b, at) => this.#pending.has(b, at) || this.#pins.has(b, at));
    const adoptShare = options.adoptShare ?? 0.5;
    // Candidates may be stored already (by another pod's image): a sample of them tells.
    const newShare = sampledNewShare(fh, cand, (sample) => this.#host.missing(sample));
    if (options.adopt && cand.length > 0 && candBytes * newShare >= adoptShare * fh.size && cs <= MAX_CHUNK_BYTES) {
      const pack = this.#appender.adopt(file, () => this.#host.newRawPackId(), sha256(fh.hashes), cs);
      if (pack !== null) {
        // Not a table entry per chunk yet (~60 ms per GiB while the pod waits): a segment,
        // made entries when something looks chunks up (see #materialize, ChunkStore.deferred).
        this.#segments.push({ pack: pack.id, hashes: fh.hashes, cand: Int32Array.from(cand), chunkSize: cs, size: fh.size });
        this.#covered.add(fh.hashes);
        return { adopted: true, candidates: cand.length };
      }
    }
    // Copy what the store lacks, reading runs of neighbouring chunks at once.
    const local = new HashTable(cand.length);
    const unique = cand.filter((i) => local.add(fh.hashes, i * HASH_BYTES).added);
    cand.length = 0;
    cand.push(...unique);
    const views = cand.map((i) => fh.hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES));
    const lacking = new Set(this.#host.missing(views));
    const take: number[] = [];
    cand.forEach((i, k) => {
      if (lacking.has(views[k]!)) take.push(i);
      else this.#pins.add(fh.hashes, i * HASH_BYTES);
    });
    if (take.length === 0) {
      this.#covered.add(fh.hashes);
      return { adopted: false, candidates: cand.length };
    }
    copyChunks(file, fh, take, (want, chunk) => this.#putVerified(want, chunk));
    this.#covered.add(fh.hashes);
    return { adopted: false, candidates: cand.length };
  }

  /**
   * Receive a file whose chunks arrive one by one, in any order (a CRIU page
   * image from a peer), straight into a raw pack laid out as the file: each
   * chunk written at its offset, zero chunks left as holes. A restore then
   * links the file whole instead of copying every page, as it does for a page
   * image this host checkpointed (adopted). Chunks given to putInFile are
   * indexed at their place in the pack when this writer commits, so a cut
   * transfer keeps them; sealFile completes the file, after which it is found
   * whole (ChunkStore.rawPackFor).
   */
  receiveFile(chunks: Uint8Array, size: number, chunkSize: number): ReceivedFile {
    this.#assertOpen();
    return this.#received.open(chunks, size, chunkSize);
  }

  /**
   * A chunk of a received file that arrived with a claimed hash: verified,
   * written at each of `positions` (the chunk indexes in the file that hold
   * it), and indexed at the first unless the store has it already.
   * `isVerified`: the caller has just checked it against its hash
   * (ChunkWorkers.verifyChunks, on another thread): not hashed again here.
   * `isExpectedNew`: as putBatch's (a peer sent only what this store
   * lacked): the store is not asked whether it has the chunk.
   */
  putInFile(f: ReceivedFile, claimed: ClaimedChunk, positions: readonly number[], options: { isVerified?: boolean; isExpectedNew?: boolean } = {}): void {
    this.#assertOpen();
    const hash = hashBytes(claimed.hash);
    const bytes = claimed.bytes;
    if (bytes.byteLength > MAX_CHUNK_BYTES || (!options.isVerified && !hashEquals(sha256(bytes), hash))) throw new ChunkMismatchError([toHex(hash)]);
    this.#received.write(f, hash, bytes, positions);
    if (this.#pending.has(hash) || this.#pins.has(hash)) return;
    if (!options.isExpectedNew && this.#host.has(hash)) {
      this.#pins.add(hash);
      return;
    }
    this.#pending.add(hash, 0, f.pack.id, positions[0]! * f.chunkSize, bytes.byteLength);
    this.newBytes += bytes.byteLength;
    this.newChunks++;
  }

  /**
   * Write every chunk of the file not received (it was stored already), read
   * and verified from the store or this writer; the file is then whole and its
   * pack is found by its chunk list from the next commit on.
   */
  sealFile(f: ReceivedFile): void {
    this.#assertOpen();
    this.#received.seal(f, (h) => this.get(h));
  }

  /**
   * Write out the chunks received files hold in memory (putInFile keeps a
   * run of neighbours to write at once): after this the caller may reuse the
   * buffers those chunks were given in.
   */
  flushReceived(): void {
    this.#assertOpen();
    this.#received.flush();
  }

  /**
   * Pin chunks the caller knows are stored now (say, because an image that
   * references them is in the catalogue at this very moment, with no await
   * since it checked). gc keeps them, and missing() trusts them without a query.
   */
  trustStored(hashes: Uint8Array, mask?: Uint8Array): void {
    this.#assertOpen();
    this.#pins.addList(hashes, mask);
  }

  /**
   * Whether this writer already accounts for the chunk (32 bytes at `at`):
   * written by it, or pinned (found stored, trusted, committed). No query.
   */
  holds(src: Uint8Array, at = 0): boolean {
    return this.#isHeld(src, at);
  }

  /** In #pending or pinned; the segments are made entries only when that is not enough to say yes. */
  #isHeld(src: Uint8Array, at = 0): boolean {
    if (this.#pending.has(src, at) || this.#pins.has(src, at)) return true;
    if (this.#segments.length === 0) return false;
    this.#materialize();
    return this.#pending.has(src, at);
  }

  /** Make entries of the adopted files' segments (once; cheap when there are none). */
  #materialize(): void {
    if (this.#segments.length === 0) return;
    for (const seg of this.#segments) addSegment(this.#pending, seg);
    this.#segments = [];
  }

  /**
   * Whether every chunk of this chunk list (the very array) is held: it was
   * put whole by putHashedFile, so an image that names it needs no lookup of
   * each of its chunks (262,144 per GiB of pages).
   */
  covers(chunks: Uint8Array): boolean {
    return this.#covered.has(chunks);
  }

  /** Whether the chunk is available to this writer (pins it when it is stored). */
  has(hash: HashLike): boolean {
    if (isZeroHash(hash)) return true;
    const h = hashBytes(hash);
    if (this.#isHeld(h)) return true;
    if (this.#host.has(h)) {
      this.#pins.add(h);
      return true;
    }
    return false;
  }

  /** Like ChunkStore.missing, and pins every hash it reports present so gc keeps it. */
  missing<T extends HashLike>(hashes: readonly T[]): T[] {
    this.#assertOpen();
    const ask: T[] = [];
    for (const h of hashes) {
      if (isZeroHash(h)) continue;
      const b = hashBytes(h);
      if (!this.#isHeld(b)) ask.push(h);
    }
    const lacking = this.#host.missing(ask);
    const lackSet = new Set(lacking);
    for (const h of ask) if (!lackSet.has(h)) this.#pins.add(hashBytes(h));
    return lacking;
  }

  /** Pin chunks this writer will reference without writing them. */
  pin(hashes: Iterable<HashLike>): void {
    this.#assertOpen();
    for (const h of hashes) if (!isZeroHash(h)) this.#pins.lease(hashHex(h));
  }

  /** A chunk's bytes, verified: this writer's uncommitted ones or the store's. */
  get(hash: HashLike): Uint8Array {
    const h = hashBytes(hash);
    this.#materialize();
    const i = this.#pending.indexOf(h);
    if (i < 0) return this.#host.get(h);
    const loc = this.#pending.locationAt(i);
    if (this.#appender.isBuffered(loc)) this.#appender.flush();
    this.#received.flush();
    return this.#host.readRecord(h, loc, this.#appender.fdOf(loc.pack)!);
  }

  /** Number of chunks written but not yet committed. */
  get pendingCount(): number {
    this.#materialize();
    return this.#pending.size;
  }

  /**
   * Make this writer's chunks durable and visible: fsync its packs, then one
   * index transaction (which also runs `alsoInTransaction`, so the catalogue
   * can record an image atomically with its chunks). The writer stays open and
   * its chunks stay pinned until close().
   */
  commit(alsoInTransaction?: () => void): void {
    this.#assertOpen();
    this.#received.flush();
    this.#appender.sync(this.#host.isDurable);
    const db = this.#host.db;
    const adoptedPacks = this.#appender.adopted.filter((p) => p.committed === 0);
    const adopted = adoptedPacks.map((p) => p.id);
    const cols = this.#pending.columns();
    const segments = this.#segments;
    // With an adopted file, every chunk of this commit is indexed after it (see PENDING_ENTRY_BYTES).
    const deferTo = adopted.length > 0 && (cols.size > 0 || segments.length > 0) ? adopted[0]! : null;
    // Chunks of adopted files that commit() finds new, and rows another writer put first: counted once here.
    const fresh = deferTo !== null ? countAdoptedNew(cols, adopted, segments) : { chunks: 0, bytes: 0 };
    let duplicates: ChunkCount = { chunks: 0, bytes: 0 };
    db.transaction(() => {
      if (deferTo !== null) {
        this.#host.pending.record(
          deferTo,
          this.#pending,
          adoptedPacks.map((p) => ({ id: p.id, chunkSize: p.chunkSize! })),
        );
      } else {
        duplicates = insertEntries(db, cols);
      }
      recordPacks(db, this.#appender.all);
      alsoInTransaction?.();
    })();
    markCommitted(this.#appender.all);
    this.#segments = [];
    if (deferTo !== null) this.#host.pending.add(deferTo, this.#pending, segments);
    if (cols.size > 0) {
      this.#pins.addCommitted(this.#pending);
      this.#pending = new HashTable();
    }
    this.newChunks += fresh.chunks - duplicates.chunks;
    this.newBytes += fresh.bytes - duplicates.bytes;
  }

  /** Discard uncommitted chunks and release every pin. */
  abort(): void {
    if (this.#isClosed) return;
    this.#appender.flush();
    this.#appender.closeFiles();
    for (const p of this.#appender.all) {
      if (p.committed === 0) this.#host.dropPack(p.id);
      else if (p.flushed > p.committed && !p.isRaw) fs.truncateSync(packPath(this.#host.packDir, p.id), p.committed);
    }
    this.#pending.clear();
    this.#segments = [];
    this.#finish();
  }

  /** Release pins; uncommitted chunks are discarded (commit first to keep them). */
  close(): void {
    if (this.#isClosed) return;
    if (this.#pending.size > 0 || this.#segments.length > 0) {
      this.abort();
      return;
    }
    this.#appender.closeFiles();
    this.#finish();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** Drop every pin (the store's own writer for put() and putBatch(), after each call). */
  forget(): void {
    this.#pins.clear();
  }

  /** Every hash gc must keep for this writer. */
  *pinnedHashes(): Generator<Uint8Array> {
    yield* this.#pins.hashes();
  }

  /** The packs this writer made (gc neither drops nor rewrites them while it is open). */
  packIds(): number[] {
    return this.#appender.all.map((p) => p.id);
  }

  #putVerified(h: Hash, bytes: Uint8Array): void {
    this.#assertOpen();
    if (bytes.byteLength > MAX_CHUNK_BYTES) {
      throw new RangeError(`Chunk ${toHex(h)} is ${bytes.byteLength} bytes; the limit is ${MAX_CHUNK_BYTES}`);
    }
    if (this.#pending.has(h) || this.#pins.has(h)) return;
    if (this.#host.has(h)) {
      this.#pins.add(h);
      return;
    }
    this.#append(h, bytes);
  }

  /** Write a chunk new to this writer (and, as far as it knows, to the store) into its pack. */
  #append(h: Hash, bytes: Uint8Array): void {
    const loc = this.#appender.append(h, bytes);
    this.#pending.add(h, 0, loc.pack, loc.offset, loc.length);
    this.newBytes += bytes.byteLength;
    this.newChunks++;
  }

  #assertOpen(): void {
    if (this.#isClosed) throw new Error(`The chunk writer "${this.label}" is closed`);
  }

  #finish(): void {
    this.#pins.clear();
    this.#isClosed = true;
    this.#host.writerClosed(this);
  }
}
