/**
 * The chunk store: content-addressed (SHA-256) chunks in append-only pack
 * files, indexed by a bun:sqlite database in WAL mode. See
 * docs/image-format.md for the layout and bench/store.ts for why packs.
 *
 * Its parts, each in its own file: writes go through a ChunkWriter
 * (chunk-writer.ts: one per checkpoint, import or transfer, visible when it
 * commits, pinning what it touched until it closes); chunks of adopted files
 * are indexed after their commit by the PendingIndex (pending-index.ts); gc
 * and compaction are in gc.ts. Each gets what it needs of the store through a
 * small interface (WriterHost, GcHost), not through members of this class.
 */
import { Database, type Statement } from "bun:sqlite";
import fs from "node:fs";
import path from "node:path";
import { PreconditionError } from "../errors.ts";
import { HASH_BYTES, type Hash, type HashLike, hashBytes, isZeroHash, sha256, toHex } from "../image/hash.ts";
import { isZeroAt } from "./_entries.ts";
import { createSchema } from "./_schema.ts";
import { PACK_HEADER_BYTES, PACK_MAGIC, RECORD_HEADER_BYTES, type RecordLocation, packPath, rawPackPath, readAt } from "./_pack.ts";
import { type ClaimedChunk, ChunkWriter, type WriterHost } from "./chunk-writer.ts";
import { CorruptChunkError, MissingChunkError } from "./errors.ts";
import { readRecord, readRuns } from "./_verified-read.ts";
import { type GcHost, type GcOptions, type GcResult, collectGarbage } from "./gc.ts";
import { PendingIndex } from "./pending-index.ts";

export { MAX_CHUNK_BYTES } from "./_entries.ts";
export { type ClaimedChunk, ChunkWriter } from "./chunk-writer.ts";
export type { GcOptions, GcResult } from "./gc.ts";

export interface ChunkStoreOptions {
  /** Roll to a new pack file past this size. Default 256 MiB. */
  maxPackBytes?: number;
  /** fsync packs and the index on commit. Default true; tests and benches may turn it off. */
  isDurable?: boolean;
}

export interface StoreStats {
  chunks: number;
  /** Sum of the stored chunks' lengths. */
  storedBytes: number;
  /** Size of the pack files (records, headers and garbage awaiting compaction). */
  packBytes: number;
  packs: number;
  /** Pack bytes that no index entry references. */
  garbageBytes: number;
  /** Open writers (checkpoints, imports, transfers in progress). */
  writers: number;
}

type Row = RecordLocation;

/** Where a chunk is, for bulk readers (restore, export). */
export interface ChunkLocation extends Row {
  /** Bytes of record header at `offset` before the data: 0 in a raw pack. */
  headerBytes: number;
}

/** A content-addressed, packed, verified chunk store in one directory. */
export class ChunkStore {
  readonly dir: string;
  /** The index database; the image catalogue keeps its tables here too, so both commit together. */
  readonly db: Database;
  readonly isDurable: boolean;
  readonly maxPackBytes: number;
  readonly #packDir: string;
  readonly #readFds = new Map<number, number>();
  /** Ids of raw packs (adopted files). */
  readonly #rawPacks = new Set<number>();
  /** Committed chunks not yet in the chunks table (see pending-index.ts). */
  readonly #pending: PendingIndex;
  readonly #writers = new Set<ChunkWriter>();
  readonly #lookup: Statement<Row, [Uint8Array]>;
  readonly #exists: Statement<{ x: number }, [Uint8Array]>;
  readonly #newPackStmt: Statement<{ id: number }, []>;
  readonly #newRawPackStmt: Statement<{ id: number }, []>;
  #autoWriter: ChunkWriter | undefined;
  #isClosed = false;
  /** The store's side of each writer's seam. */
  readonly #writerHost: WriterHost;
  readonly #gcHost: GcHost;

  private constructor(dir: string, options: ChunkStoreOptions) {
    this.dir = dir;
    this.isDurable = options.isDurable ?? true;
    this.maxPackBytes = options.maxPackBytes ?? 256 << 20;
    this.#packDir = path.join(dir, "packs");
    fs.mkdirSync(this.#packDir, { recursive: true, mode: 0o700 });
    this.db = new Database(path.join(dir, "index.sqlite"), { create: true, strict: true });
    try {
      // One owner (the agent): an exclusive lock keeps a second process from
      // opening the store and "recovering" packs another writer is filling.
      this.db.exec("PRAGMA locking_mode = EXCLUSIVE");
      // A new store's pages are 64 KiB: an image's manifest (8 MiB of chunk hashes per GiB of memory)
      // goes to the WAL in 130 frames instead of 2,050, a third of the time, while the pod waits.
      // (An existing store keeps its page size: it cannot change in WAL mode.)
      this.db.exec("PRAGMA page_size = 65536");
      this.db.exec("PRAGMA journal_mode = WAL");
      this.db.exec(`PRAGMA synchronous = ${this.isDurable ? "FULL" : "OFF"}`);
      // Hashes are random keys: every insert and lookup lands on a random page, so keep the index in memory.
      this.db.exec("PRAGMA cache_size = -131072");
      this.db.exec("BEGIN IMMEDIATE; COMMIT");
    } catch (e) {
      this.db.close();
      throw new PreconditionError(`Cannot open the chunk store "${dir}": it is in use by another process or unreadable`, { cause: e });
    }
    createSchema(this.db);
    this.db.run("INSERT OR IGNORE INTO meta(key, value) VALUES ('format', '1')");
    this.#lookup = this.db.query("SELECT pack, offset, length FROM chunks WHERE hash = ?");
    this.#exists = this.db.query("SELECT 1 AS x FROM chunks WHERE hash = ?");
    this.#newPackStmt = this.db.query("INSERT INTO packs(size) VALUES (0) RETURNING id");
    this.#newRawPackStmt = this.db.query("INSERT INTO packs(size, raw) VALUES (0, 1) RETURNING id");
    this.#recover();
    for (const r of this.db.query<{ id: number }, []>("SELECT id FROM packs WHERE raw = 1").all()) this.#rawPacks.add(r.id);
    this.#pending = new PendingIndex(this.db, (pack) => (this.#rawPacks.has(pack) ? rawPackPath(this.#packDir, pack) : null));
    this.#writerHost = this.#makeWriterHost();
    this.#gcHost = this.#makeGcHost();
    this.#pending.mergeSoon();
  }

  /** Open (creating if needed) the store in `dir`, recovering from any crash. */
  static open(dir: string, options: ChunkStoreOptions = {}): ChunkStore {
    return new ChunkStore(dir, options);
  }

  /** Whether the store has this chunk (the zero marker is always "had"). */
  has(hash: HashLike): boolean {
    if (isZeroHash(hash)) return true;
    const h = hashBytes(hash);
    return this.#exists.get(h) !== null || this.#pending.locationOf(h) !== null;
  }

  /**
   * The hashes the store lacks, in the order given (the same values that were
   * passed). One query for the whole list.
   */
  missing<T extends HashLike>(hashes: readonly T[]): T[] {
    if (hashes.length === 0) return [];
    const all = new Uint8Array(hashes.length * HASH_BYTES);
    hashes.forEach((h, i) => {
      all.set(hashBytes(h), i * HASH_BYTES);
    });
    const rows = this.db
      .query<{ i: number }, [Uint8Array, number]>(
        `WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < ?2)
         SELECT i FROM s WHERE NOT EXISTS (SELECT 1 FROM chunks WHERE hash = substr(?1, i * 32 + 1, 32))`,
      )
      .values(all, hashes.length) as number[][];
    const out: T[] = [];
    for (const [i] of rows) {
      const h = hashes[i!]!;
      if (!isZeroHash(h) && (this.#pending.isEmpty || this.#pending.locationOf(all, i! * HASH_BYTES) === null)) out.push(h);
    }
    return out;
  }

  /** The chunk's bytes, verified against its hash. */
  get(hash: HashLike): Uint8Array {
    const h = hashBytes(hash);
    if (isZeroHash(h)) throw new TypeError("The zero marker has no stored bytes; its length comes from the manifest");
    const row = this.#lookupRow(h);
    if (row === null) throw new MissingChunkError(toHex(h));
    return this.#readRecord(h, row, this.#readFd(row.pack));
  }

  /**
   * Where each of `hashes` (n × 32 bytes, zero markers allowed) is stored: one
   * query for the whole list. Entries of zero markers and of chunks the store
   * lacks are null.
   */
  locate(hashes: Uint8Array): Array<ChunkLocation | null> {
    const n = hashes.byteLength / HASH_BYTES;
    const out: Array<ChunkLocation | null> = new Array(n).fill(null);
    if (n === 0) return out;
    const rows = this.db
      .query<[number, number, number, number], [Uint8Array, number]>(
        `WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < ?2)
         SELECT s.i, c.pack, c.offset, c.length FROM s JOIN chunks c ON c.hash = substr(?1, s.i * 32 + 1, 32)`,
      )
      .values(hashes, n) as Array<[number, number, number, number]>;
    for (const [i, pack, offset, length] of rows) out[i] = { pack, offset, length, headerBytes: this.#rawPacks.has(pack) ? 0 : RECORD_HEADER_BYTES };
    if (!this.#pending.isEmpty) {
      for (let i = 0; i < n; i++) {
        if (out[i] !== null || isZeroAt(hashes, i * HASH_BYTES)) continue;
        const row = this.#pending.locationOf(hashes, i * HASH_BYTES);
        if (row !== null) out[i] = { ...row, headerBytes: this.#rawPacks.has(row.pack) ? 0 : RECORD_HEADER_BYTES };
      }
    }
    return out;
  }

  /**
   * The bytes of many chunks (n × 32 bytes of hashes, no zero markers), in
   * order, each verified as get() does; neighbours in a pack are read with one
   * pread. Throws MissingChunkError or CorruptChunkError; `index` says which.
   * `locations`: from locate(), when the caller already asked.
   * `isTransient`: each chunk's bytes are valid only until the next one is
   * read (one buffer is reused), for a caller that copies them at once.
   * `isCheckedByReader`: not hashed here, for bytes whose reader checks each
   * chunk against its hash anyway (an export to a peer, which verifies all).
   */
  readMany(
    hashes: Uint8Array,
    locations?: Array<ChunkLocation | null>,
    options: { isTransient?: boolean; isCheckedByReader?: boolean } = {},
  ): Generator<Uint8Array> {
    // Not a generator delegating to readRuns (yield* costs per chunk); locate() still runs on the first next().
    return readRuns(
      hashes,
      () => locations ?? this.locate(hashes),
      (pack) => this.#readFd(pack),
      options,
    );
  }

  /** The path of a pack file (for bulk readers that verify what they read). */
  packFile(pack: number): string {
    return this.#rawPacks.has(pack) ? rawPackPath(this.#packDir, pack) : packPath(this.#packDir, pack);
  }

  /**
   * A raw pack that is exactly a file with this chunk list (SHA-256 of its
   * concatenated chunk hashes) and size, as adopted: a restore can link it
   * instead of copying, and verifies it all the same. Null when there is none
   * (never adopted, or compacted since).
   */
  rawPackFor(chunkList: Uint8Array, size: number): string | null {
    // A restore asks twice for each page image (to start its check, then to link it): its chunk list
    // (8 MiB for 1 GiB of pages) is hashed once. A list changed after (none is) would only miss the
    // pack, or link one whose check then fails: a linked pack is always checked against the list.
    let digest = this.#listDigests.get(chunkList);
    if (digest === undefined) {
      digest = sha256(chunkList);
      this.#listDigests.set(chunkList, digest);
    }
    const row = this.db.query<{ id: number }, [Uint8Array, number]>("SELECT id FROM packs WHERE digest = ? AND size = ? AND raw = 1 LIMIT 1").get(digest, size);
    return row ? rawPackPath(this.#packDir, row.id) : null;
  }

  readonly #listDigests = new WeakMap<Uint8Array, Uint8Array>();

  /** Store one chunk, durably; returns its hash. */
  put(bytes: Uint8Array): Hash {
    const w = this.#auto();
    const h = w.put(bytes);
    w.commit();
    w.forget();
    return h;
  }

  /**
   * Store chunks that arrived with their hashes (from a peer), verifying each.
   * If any does not match, nothing is stored and the ChunkMismatchError names
   * every bad hash.
   */
  putBatch(items: readonly ClaimedChunk[]): Hash[] {
    const w = this.#auto();
    const hashes = w.putBatch(items);
    w.commit();
    w.forget();
    return hashes;
  }

  /** Start a writer: its chunks become visible when it commits and stay pinned until it closes. */
  writer(label = "writer"): ChunkWriter {
    this.#assertOpen();
    const w = new ChunkWriter(this.#writerHost, label);
    this.#writers.add(w);
    return w;
  }

  /**
   * Remove every chunk that is neither in `live` nor pinned by an open writer,
   * then compact packs that became mostly garbage. Pass `live` as a function:
   * it is called inside the same synchronous step that deletes, so nothing can
   * commit between the two.
   */
  gc(live: Iterable<HashLike> | (() => Iterable<HashLike>), options: GcOptions = {}): GcResult {
    this.#assertOpen();
    this.mergePending(); // gc reasons over the chunks table alone
    return collectGarbage(this.#gcHost, live, options);
  }

  stats(): StoreStats {
    this.mergePending();
    const c = this.db.query<{ n: number; bytes: number | null }, []>("SELECT COUNT(*) AS n, SUM(length) AS bytes FROM chunks").get()!;
    const p = this.db
      .query<{ n: number; bytes: number | null; raw: number | null }, []>("SELECT COUNT(*) AS n, SUM(size) AS bytes, SUM(raw) AS raw FROM packs WHERE size > 0")
      .get()!;
    // Record headers are in plain packs only.
    const inRaw =
      this.#rawPacks.size === 0
        ? 0
        : this.db.query<{ n: number }, []>("SELECT COUNT(*) AS n FROM chunks WHERE pack IN (SELECT id FROM packs WHERE raw = 1)").get()!.n;
    const storedBytes = c.bytes ?? 0;
    const packBytes = p.bytes ?? 0;
    const plainPacks = p.n - (p.raw ?? 0);
    return {
      chunks: c.n,
      storedBytes,
      packBytes,
      packs: p.n,
      garbageBytes: Math.max(0, packBytes - storedBytes - (c.n - inRaw) * RECORD_HEADER_BYTES - plainPacks * PACK_HEADER_BYTES),
      writers: this.#writers.size,
    };
  }

  /**
   * Read every committed record and check it against its hash and the index.
   * Returns the hex hashes of bad chunks (for `autopod doctor`-style checks and tests).
   */
  verifyAll(): { checked: number; corrupt: string[] } {
    this.mergePending();
    const rows = this.db.query<Row & { hash: Uint8Array }, []>("SELECT hash, pack, offset, length FROM chunks ORDER BY pack, offset").all();
    const corrupt: string[] = [];
    for (const row of rows) {
      try {
        this.#readRecord(row.hash, row, this.#readFd(row.pack));
      } catch (e) {
        if (e instanceof CorruptChunkError) corrupt.push(e.hash);
        else throw e;
      }
    }
    return { checked: rows.length, corrupt };
  }

  /**
   * Index every chunk still pending (adopted files committed before), now.
   * Runs on its own in the background after each such commit.
   */
  mergePending(): void {
    this.#assertOpen();
    this.#pending.mergeAll();
  }

  /** Chunks committed but not yet in the chunks table. */
  get pendingIndexSize(): number {
    return this.#pending.size;
  }

  close(): void {
    if (this.#isClosed) return;
    this.#pending.close();
    for (const w of [...this.#writers]) w.abort();
    this.#autoWriter?.close();
    for (const fd of this.#readFds.values()) fs.closeSync(fd);
    this.#readFds.clear();
    this.db.close();
    this.#isClosed = true;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * Hold background merging while something that wants both cores runs (a
   * checkpoint or a restore): pending chunks are answered from memory
   * meanwhile. Returns the release; merging goes on when the last is released.
   */
  holdMerging(): () => void {
    return this.#pending.hold();
  }

  #makeWriterHost(): WriterHost {
    return {
      db: this.db,
      isDurable: this.isDurable,
      packDir: this.#packDir,
      maxPackBytes: this.maxPackBytes,
      pending: this.#pending,
      newPackId: () => this.#newPackId(),
      newRawPackId: () => {
        const id = this.#unsynced(() => this.#newRawPackStmt.get()!.id);
        this.#rawPacks.add(id);
        return id;
      },
      has: (h) => this.has(h),
      missing: (hashes) => this.missing(hashes),
      get: (h) => this.get(h),
      readRecord: (h, at, fd) => this.#readRecord(h, at, fd),
      dropPack: (id) => this.#dropPack(id),
      writerClosed: (w) => {
        this.#writers.delete(w);
      },
    };
  }

  #makeGcHost(): GcHost {
    const writers = this.#writers;
    return {
      db: this.db,
      isDurable: this.isDurable,
      packDir: this.#packDir,
      maxPackBytes: this.maxPackBytes,
      pinnedHashes: function* () {
        for (const w of writers) yield* w.pinnedHashes();
      },
      busyPacks: () => {
        const busy = new Set<number>();
        for (const w of this.#writers) for (const id of w.packIds()) busy.add(id);
        if (this.#autoWriter !== undefined) for (const id of this.#autoWriter.packIds()) busy.add(id);
        return busy;
      },
      isRawPack: (pack) => this.#rawPacks.has(pack),
      readFd: (pack) => this.#readFd(pack),
      readRecord: (h, at, fd) => this.#readRecord(h, at, fd),
      newPackId: () => this.#newPackId(),
      dropPack: (id) => this.#dropPack(id),
      removePackFile: (id) => this.#removePackFile(id),
      stats: () => this.stats(),
    };
  }

  /** A record's bytes read through `fd`, verified against `h` and the index. */
  #readRecord(h: Uint8Array, row: Row, fd: number): Uint8Array {
    return readRecord(h, row, fd, this.#rawPacks.has(row.pack));
  }

  /** Where a committed chunk is: in the chunks table or pending. */
  #lookupRow(h: Uint8Array): Row | null {
    return this.#lookup.get(h) ?? this.#pending.locationOf(h);
  }

  #newPackId(): number {
    return this.#unsynced(() => this.#newPackStmt.get()!.id);
  }

  /**
   * Run a statement whose commit need not reach the disk: a new pack's row of
   * size 0. Lost in a crash, it takes nothing with it (recovery removes pack
   * files the index does not know, and rows of size 0), and the writer's own
   * commit, synced, makes it durable. Synced, it would wait behind a journal
   * commit that is writing out a checkpoint's page image.
   */
  #unsynced<T>(run: () => T): T {
    if (!this.isDurable || this.db.inTransaction) return run();
    this.db.exec("PRAGMA synchronous = OFF");
    try {
      return run();
    } finally {
      this.db.exec("PRAGMA synchronous = FULL");
    }
  }

  #auto(): ChunkWriter {
    this.#assertOpen();
    if (this.#autoWriter === undefined) {
      this.#autoWriter = new ChunkWriter(this.#writerHost, "auto");
    }
    return this.#autoWriter;
  }

  #assertOpen(): void {
    if (this.#isClosed) throw new Error(`The chunk store "${this.dir}" is closed`);
  }

  #readFd(pack: number): number {
    let fd = this.#readFds.get(pack);
    if (fd === undefined) {
      try {
        fd = fs.openSync(this.packFile(pack), "r");
      } catch (e) {
        throw new PreconditionError(`Pack ${pack} of the chunk store "${this.dir}" cannot be opened`, { cause: e });
      }
      this.#readFds.set(pack, fd);
    }
    return fd;
  }

  #dropPack(id: number): void {
    this.db.run("DELETE FROM packs WHERE id = ?", [id]);
    this.#removePackFile(id);
  }

  #removePackFile(id: number): void {
    const file = this.packFile(id);
    const fd = this.#readFds.get(id);
    if (fd !== undefined) {
      fs.closeSync(fd);
      this.#readFds.delete(id);
    }
    fs.rmSync(file, { force: true });
    this.#rawPacks.delete(id);
  }

  /**
   * After a crash: a pack's bytes past its committed size were never indexed,
   * so cut them; packs that never committed anything and files the index does
   * not know are removed.
   */
  #recover(): void {
    const rows = this.db.query<{ id: number; size: number; raw: number }, []>("SELECT id, size, raw FROM packs").all();
    const known = new Map(rows.map((r) => [r.id, r]));
    for (const name of fs.readdirSync(this.#packDir)) {
      const m = /^(\d{8})\.(pack|pages)$/.exec(name);
      const file = path.join(this.#packDir, name);
      const row = m ? known.get(Number(m[1])) : undefined;
      const size = row !== undefined && (row.raw === 1) === (m![2] === "pages") ? row.size : undefined;
      if (size === undefined || size === 0) {
        fs.rmSync(file, { force: true });
        continue;
      }
      if (row!.raw === 1) continue; // adopted whole: no header, never appended to
      const st = fs.statSync(file);
      if (st.size > size) fs.truncateSync(file, size);
      else if (st.size < size) {
        // Committed bytes are gone (disk damage or a copy cut short): keep the
        // file; reads of the lost chunks will fail naming them.
      }
      const fd = fs.openSync(file, "r");
      try {
        const magic = new TextDecoder().decode(readAt(fd, 8, 0));
        if (magic !== PACK_MAGIC) {
          // Leave it; every read from it will report corruption by hash.
        }
      } finally {
        fs.closeSync(fd);
      }
    }
    this.db.run("DELETE FROM packs WHERE size = 0");
  }
}
