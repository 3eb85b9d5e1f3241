/**
 * The chunk store: content-addressed (SHA-256) chunks in append-only pack
 * files, indexed by a bun:sqlite database in WAL mode. See
 * docs/image-format.md for the layout and bench/store.ts for why packs.
 *
 * Writes go through a ChunkWriter (one per checkpoint, import or transfer):
 * it appends to packs of its own and makes its chunks visible only when it
 * commits (fsync the packs, then one index transaction). Until then, and until
 * it is closed, it pins every chunk it wrote or found already stored, so a
 * concurrent gc cannot remove them.
 */
import { Database, type Statement } from "bun:sqlite";
import fs from "node:fs";
import path from "node:path";
import { PreconditionError } from "../errors.ts";
import { ChunkMismatchError, CorruptChunkError, MissingChunkError } from "./errors.ts";
import { HashTable } from "../image/hash-table.ts";
import { HASH_BYTES, type Hash, type HashLike, hashBytes, hashEquals, hashHex, isAllZero, isZeroHash, sha256, toHex } from "../image/hash.ts";
import type { FileHashes } from "./chunk-workers.ts";
import { PACK_HEADER_BYTES, PACK_MAGIC, PackAppender, RECORD_HEADER_BYTES, type RecordLocation, packPath, rawPackPath, readAt } from "./_pack.ts";

/** The largest chunk the store accepts. */
export const MAX_CHUNK_BYTES = 16 << 20;

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

export interface GcResult {
  removedChunks: number;
  removedBytes: number;
  packsDeleted: number;
  packsRewritten: number;
  /** Pack bytes on disk before and after. */
  packBytesBefore: number;
  packBytesAfter: number;
}

export interface GcOptions {
  /** Rewrite a pack whose live records fill less than this share of it. Default 0.5. */
  compactBelow?: number;
}

/** A chunk given with the hash it claims to have. */
export interface ClaimedChunk {
  hash: HashLike;
  bytes: Uint8Array;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS packs(id INTEGER PRIMARY KEY AUTOINCREMENT, size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chunks(
  hash BLOB PRIMARY KEY,
  pack INTEGER NOT NULL,
  offset INTEGER NOT NULL,
  length INTEGER NOT NULL
) WITHOUT ROWID;
`;

/**
 * Raw packs (adopted files, see rawPackPath) are flagged in packs.raw, with the
 * SHA-256 of the adopted file's chunk list in packs.digest. There is no index
 * of chunks by pack: it doubled the cost of every insert (262,144 per GiB of
 * pages), and only gc, which scans anyway, needs it.
 */
/**
 * A commit that adopted a file indexes its chunks after the commit, in the
 * background: 262,144 index inserts per GiB cost more than the rest of a
 * checkpoint. The commit records them durably as one row of pending_index
 * (keyed by the adopted pack's id; entries in columns: n 32-byte hashes, n f64
 * LE offsets, n u32 LE lengths, n u32 LE packs), which the store reads back
 * into memory, answers from, and merges into chunks in small transactions; a
 * crash mid-merge only means merging again.
 */
const PENDING_ENTRY_BYTES = 48;

function migrate(db: Database): void {
  db.exec("CREATE TABLE IF NOT EXISTS pending_index(pack INTEGER PRIMARY KEY, entries BLOB NOT NULL)");
  db.exec("CREATE TABLE IF NOT EXISTS pending_raw(pack INTEGER PRIMARY KEY, grp INTEGER NOT NULL, chunk_size INTEGER NOT NULL)");
  const cols = new Set(
    db
      .query<{ name: string }, []>("PRAGMA table_info(packs)")
      .all()
      .map((c) => c.name),
  );
  if (!cols.has("raw")) db.exec("ALTER TABLE packs ADD COLUMN raw INTEGER NOT NULL DEFAULT 0");
  if (!cols.has("digest")) db.exec("ALTER TABLE packs ADD COLUMN digest BLOB");
  db.exec("CREATE INDEX IF NOT EXISTS packs_by_digest ON packs(digest) WHERE digest IS NOT NULL");
  db.exec("DROP INDEX IF EXISTS chunks_by_pack");
}

type Row = { pack: number; offset: number; length: number };

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
  /** Committed chunks not yet in the chunks table, by pack (see PENDING_ENTRY_BYTES). */
  readonly #deferred = new Map<number, HashTable>();
  /** Adopted files' chunks handed over by deferred(), not entries of their table yet, by group. */
  readonly #segments = new Map<number, RawSegment[]>();
  #mergeTimer: ReturnType<typeof setTimeout> | null = null;
  #mergeHolds = 0;
  /** How far the background merge has gone, by pack, and in which order it goes. */
  readonly #merged = new Map<number, number>();
  readonly #mergeOrder = new Map<number, ArrayLike<number>>();
  readonly #writers = new Set<ChunkWriter>();
  readonly #lookup: Statement<Row, [Uint8Array]>;
  readonly #exists: Statement<{ x: number }, [Uint8Array]>;
  readonly #newPackStmt: Statement<{ id: number }, []>;
  readonly #newRawPackStmt: Statement<{ id: number }, []>;
  #autoWriter: ChunkWriter | undefined;
  #isClosed = false;

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
    this.db.exec(SCHEMA);
    migrate(this.db);
    this.db.run("INSERT OR IGNORE INTO meta(key, value) VALUES ('format', '1')");
    this.#lookup = this.db.query("SELECT pack, offset, length FROM chunks WHERE hash = ?");
    this.#exists = this.db.query("SELECT 1 AS x FROM chunks WHERE hash = ?");
    this.#newPackStmt = this.db.query("INSERT INTO packs(size) VALUES (0) RETURNING id");
    this.#newRawPackStmt = this.db.query("INSERT INTO packs(size, raw) VALUES (0, 1) RETURNING id");
    this.#recover();
    for (const r of this.db.query<{ id: number }, []>("SELECT id FROM packs WHERE raw = 1").all()) this.#rawPacks.add(r.id);
    for (const r of this.db.query<{ pack: number; entries: Uint8Array }, []>("SELECT pack, entries FROM pending_index").all()) {
      this.#deferred.set(r.pack, decodePending(r.entries));
    }
    // An adopted file's chunks are recorded by the file alone: hash it again.
    for (const r of this.db.query<{ pack: number; grp: number; chunk_size: number }, []>("SELECT pack, grp, chunk_size FROM pending_raw").all()) {
      let table = this.#deferred.get(r.grp);
      if (table === undefined) this.#deferred.set(r.grp, (table = new HashTable()));
      if (this.#rawPacks.has(r.pack)) indexRawPack(rawPackPath(this.#packDir, r.pack), r.pack, r.chunk_size, table);
    }
    this.#mergeSoon();
  }

  /** Open (creating if needed) the store in `dir`, recovering from any crash. */
  static open(dir: string, options: ChunkStoreOptions = {}): ChunkStore {
    return new ChunkStore(dir, options);
  }

  /** Whether the store has this chunk (the zero marker is always "had"). */
  has(hash: HashLike): boolean {
    if (isZeroHash(hash)) return true;
    const h = hashBytes(hash);
    return this.#exists.get(h) !== null || this.#deferredRow(h) !== null;
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
      if (!isZeroHash(h) && (this.#deferred.size === 0 || this.#deferredRow(all, i! * HASH_BYTES) === null)) out.push(h);
    }
    return out;
  }

  /** The chunk's bytes, verified against its hash. */
  get(hash: HashLike): Uint8Array {
    const h = hashBytes(hash);
    if (isZeroHash(h)) throw new TypeError("The zero marker has no stored bytes; its length comes from the manifest");
    const row = this.lookup(h);
    if (row === null) throw new MissingChunkError(toHex(h));
    return this.readRecord(h, row, this.#readFd(row.pack));
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
    if (this.#deferred.size > 0) {
      for (let i = 0; i < n; i++) {
        if (out[i] !== null || isZeroAt(hashes, i * HASH_BYTES)) continue;
        const row = this.#deferredRow(hashes, i * HASH_BYTES);
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
   */
  *readMany(hashes: Uint8Array, locations?: Array<ChunkLocation | null>): Generator<Uint8Array> {
    const n = hashes.byteLength / HASH_BYTES;
    const locs = locations ?? this.locate(hashes);
    for (let i = 0; i < n; ) {
      const first = locs[i];
      const h0 = hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES);
      if (!first) throw Object.assign(new MissingChunkError(toHex(h0)), { index: i });
      // The run: following chunks right after this one in the same pack, up to 4 MiB.
      let end = i + 1;
      let next = first.offset + first.headerBytes + first.length;
      let bytes = first.headerBytes + first.length;
      while (end < n) {
        const l = locs[end];
        if (!l || l.pack !== first.pack || l.offset !== next || bytes + l.headerBytes + l.length > READ_RUN_BYTES) break;
        next += l.headerBytes + l.length;
        bytes += l.headerBytes + l.length;
        end++;
      }
      const fd = this.#readFd(first.pack);
      let run: Uint8Array;
      try {
        run = readAt(fd, bytes, first.offset);
      } catch (e) {
        throw Object.assign(new CorruptChunkError(toHex(h0), `cannot read pack ${first.pack} at ${first.offset}`, { cause: e }), { index: i });
      }
      let at = 0;
      for (let k = i; k < end; k++) {
        const l = locs[k]!;
        const h = hashes.subarray(k * HASH_BYTES, (k + 1) * HASH_BYTES);
        const rec = run.subarray(at, at + l.headerBytes + l.length);
        at += l.headerBytes + l.length;
        if (rec.byteLength !== l.headerBytes + l.length)
          throw Object.assign(new CorruptChunkError(toHex(h), `pack ${l.pack} ends before the chunk at ${l.offset}`), { index: k });
        if (l.headerBytes > 0) {
          const len = (rec[32]! | (rec[33]! << 8) | (rec[34]! << 16) | (rec[35]! << 24)) >>> 0;
          if (!hashEquals(rec.subarray(0, HASH_BYTES), h) || len !== l.length) {
            throw Object.assign(new CorruptChunkError(toHex(h), `the index and pack ${l.pack} disagree at offset ${l.offset}`), { index: k });
          }
        }
        const data = rec.subarray(l.headerBytes);
        if (!hashEquals(sha256(data), h)) throw Object.assign(new CorruptChunkError(toHex(h), "its bytes no longer match its hash"), { index: k });
        yield data;
      }
      i = end;
    }
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
    const row = this.db
      .query<{ id: number }, [Uint8Array, number]>("SELECT id FROM packs WHERE digest = ? AND size = ? AND raw = 1 LIMIT 1")
      .get(sha256(chunkList), size);
    return row ? rawPackPath(this.#packDir, row.id) : null;
  }

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
    const w = new ChunkWriter(this, label);
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
    const before = this.stats();
    const compactBelow = options.compactBelow ?? 0.5;
    this.db.exec("CREATE TEMP TABLE IF NOT EXISTS gc_live(h BLOB PRIMARY KEY) WITHOUT ROWID");
    let removed = { n: 0, bytes: 0 };
    this.db.transaction(() => {
      this.db.exec("DELETE FROM temp.gc_live");
      const add = this.db.query<unknown, [Uint8Array]>("INSERT OR IGNORE INTO temp.gc_live(h) VALUES (?)");
      const liveHashes = typeof live === "function" ? live() : live;
      for (const h of liveHashes) if (!isZeroHash(h)) add.run(hashBytes(h));
      for (const w of this.#writers) for (const h of w.pinnedHashes()) add.run(h);
      const dead = this.db
        .query<{ n: number; bytes: number | null }, []>("SELECT COUNT(*) AS n, SUM(length) AS bytes FROM chunks WHERE hash NOT IN (SELECT h FROM temp.gc_live)")
        .get()!;
      removed = { n: dead.n, bytes: dead.bytes ?? 0 };
      this.db.run("DELETE FROM chunks WHERE hash NOT IN (SELECT h FROM temp.gc_live)");
      this.db.exec("DELETE FROM temp.gc_live");
    })();

    const busy = new Set<number>();
    for (const w of this.#writers) for (const id of w.packIds()) busy.add(id);
    if (this.#autoWriter !== undefined) for (const id of this.#autoWriter.packIds()) busy.add(id);
    // One scan of the chunks (there is no index by pack), then the packs.
    const liveOf = new Map<number, number>();
    for (const [pack, live] of this.db.query<[number, number], []>("SELECT pack, SUM(length) FROM chunks GROUP BY pack").values() as Array<[number, number]>) {
      liveOf.set(pack, live);
    }
    const packs = this.db.query<{ id: number; size: number; raw: number }, []>("SELECT id, size, raw FROM packs ORDER BY id").all();
    const countOf = new Map<number, number>();
    for (const [pack, n] of this.db.query<[number, number], []>("SELECT pack, COUNT(*) FROM chunks GROUP BY pack").values() as Array<[number, number]>) {
      countOf.set(pack, n);
    }
    let packsDeleted = 0;
    const toRewrite: number[] = [];
    for (const p of packs) {
      if (busy.has(p.id)) continue;
      const data = liveOf.get(p.id) ?? 0;
      const live = p.raw ? data : data + (countOf.get(p.id) ?? 0) * RECORD_HEADER_BYTES;
      const payload = p.raw ? p.size : p.size - PACK_HEADER_BYTES;
      if (data === 0 && !countOf.has(p.id)) {
        this.#dropPack(p.id);
        packsDeleted++;
      } else if (live / Math.max(1, payload) < compactBelow) {
        toRewrite.push(p.id);
      }
    }
    for (const id of toRewrite) this.#rewritePack(id);
    const after = this.stats();
    return {
      removedChunks: removed.n,
      removedBytes: removed.bytes,
      packsDeleted: packsDeleted + toRewrite.length,
      packsRewritten: toRewrite.length,
      packBytesBefore: before.packBytes,
      packBytesAfter: after.packBytes,
    };
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
        this.readRecord(row.hash, row, this.#readFd(row.pack));
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
    for (const pack of [...this.#deferred.keys()]) while (this.#mergeSlice(pack, Infinity));
  }

  /** Chunks committed but not yet in the chunks table. */
  get pendingIndexSize(): number {
    this.#materializeDeferred();
    let n = 0;
    for (const t of this.#deferred.values()) n += t.size;
    return n;
  }

  close(): void {
    if (this.#isClosed) return;
    if (this.#mergeTimer !== null) clearTimeout(this.#mergeTimer);
    this.#mergeTimer = null;
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

  // ---- for ChunkWriter and the catalogue (same module family; not for callers) ----

  /** @internal */
  readRecord(h: Uint8Array, row: Row, fd: number): Uint8Array {
    if (this.#rawPacks.has(row.pack)) {
      let data: Uint8Array;
      try {
        data = readAt(fd, row.length, row.offset);
      } catch (e) {
        throw new CorruptChunkError(toHex(h), `cannot read pack ${row.pack} at ${row.offset}`, { cause: e });
      }
      if (data.byteLength !== row.length) throw new CorruptChunkError(toHex(h), `pack ${row.pack} ends before the chunk at ${row.offset}`);
      if (!hashEquals(sha256(data), h)) throw new CorruptChunkError(toHex(h), "its bytes no longer match its hash");
      return data;
    }
    let rec: Uint8Array;
    try {
      rec = readAt(fd, RECORD_HEADER_BYTES + row.length, row.offset);
    } catch (e) {
      throw new CorruptChunkError(toHex(h), `cannot read pack ${row.pack} at ${row.offset}`, { cause: e });
    }
    if (rec.byteLength !== RECORD_HEADER_BYTES + row.length) {
      throw new CorruptChunkError(toHex(h), `pack ${row.pack} ends before the chunk at ${row.offset}`);
    }
    const recLen = rec[32]! | (rec[33]! << 8) | (rec[34]! << 16) | (rec[35]! << 24);
    if (!hashEquals(rec.subarray(0, HASH_BYTES), h) || recLen >>> 0 !== row.length) {
      throw new CorruptChunkError(toHex(h), `the index and pack ${row.pack} disagree at offset ${row.offset}`);
    }
    const data = rec.subarray(RECORD_HEADER_BYTES);
    if (!hashEquals(sha256(data), h)) throw new CorruptChunkError(toHex(h), "its bytes no longer match its hash");
    return data;
  }

  /** @internal */
  newPackId(): number {
    return this.#unsynced(() => this.#newPackStmt.get()!.id);
  }

  /** @internal A pack id for a file to adopt as a raw pack. */
  newRawPackId(): number {
    const id = this.#unsynced(() => this.#newRawPackStmt.get()!.id);
    this.#rawPacks.add(id);
    return id;
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

  /** @internal */
  get packDir(): string {
    return this.#packDir;
  }

  /** @internal */
  lookup(h: Uint8Array): Row | null {
    return this.#lookup.get(h) ?? this.#deferredRow(h);
  }

  /**
   * @internal Record a writer's chunks of adopted files as pending, inside its
   * commit transaction; they are visible as soon as it commits.
   */
  deferIndex(pack: number, table: HashTable, raw: ReadonlyArray<{ id: number; chunkSize: number }> = []): void {
    // Chunks of adopted files are not written out one by one: the file itself says what they
    // are, and is hashed again if the agent stops before they are merged (see indexRawPack).
    const isRaw = new Set(raw.map((r) => r.id));
    this.db.query<unknown, [number, Uint8Array]>("INSERT OR REPLACE INTO pending_index(pack, entries) VALUES (?, ?)").run(
      pack,
      encodePending(table, (p) => !isRaw.has(p)),
    );
    const ins = this.db.query<unknown, [number, number, number]>("INSERT OR REPLACE INTO pending_raw(pack, grp, chunk_size) VALUES (?, ?, ?)");
    for (const r of raw) ins.run(r.id, pack, r.chunkSize);
  }

  /**
   * @internal After the commit of deferIndex: answer from the table (and the
   * adopted files' segments, made entries on the first lookup or merge), and
   * merge it soon.
   */
  deferred(pack: number, table: HashTable, segments: readonly RawSegment[] = []): void {
    this.#deferred.set(pack, table);
    if (segments.length > 0) this.#segments.set(pack, [...(this.#segments.get(pack) ?? []), ...segments]);
    // Not at once: the checkpoint that committed is still finishing (stopping its pod).
    this.#mergeSoon(MERGE_DELAY_MS);
  }

  /** Make entries of the segments handed over by deferred() (once; cheap when there are none). */
  #materializeDeferred(): void {
    if (this.#segments.size === 0) return;
    for (const [pack, segments] of this.#segments) {
      const table = this.#deferred.get(pack);
      if (table !== undefined) for (const seg of segments) addSegment(table, seg);
    }
    this.#segments.clear();
  }

  #deferredRow(src: Uint8Array, at = 0): Row | null {
    for (const t of this.#deferred.values()) {
      const i = t.indexOf(src, at);
      if (i >= 0) return t.locationAt(i);
    }
    // Not among the entries: perhaps in a segment (made entries now, once).
    if (this.#segments.size === 0) return null;
    this.#materializeDeferred();
    return this.#deferredRow(src, at);
  }

  /**
   * Hold background merging while something that wants both cores runs (a
   * checkpoint or a restore): pending chunks are answered from memory
   * meanwhile. Returns the release; merging goes on when the last is released.
   */
  holdMerging(): () => void {
    this.#mergeHolds++;
    let isReleased = false;
    return () => {
      if (isReleased) return;
      isReleased = true;
      if (--this.#mergeHolds === 0) this.#mergeSoon(MERGE_DELAY_MS);
    };
  }

  #mergeSoon(delayMs = 0): void {
    if (this.#mergeTimer !== null || this.#deferred.size === 0 || this.#isClosed) return;
    this.#mergeTimer = setTimeout(() => {
      this.#mergeTimer = null;
      if (this.#isClosed || this.#mergeHolds > 0) return;
      const pack = this.#deferred.keys().next().value;
      if (pack === undefined) return;
      try {
        this.#mergeSlice(pack, MERGE_SLICE);
      } catch {
        // Busy or failing: the entries stay pending (and answered from memory); try again later.
        this.#mergeTimer = setTimeout(() => {
          this.#mergeTimer = null;
          this.#mergeSoon();
        }, 1000);
        return;
      }
      this.#mergeSoon();
    }, delayMs);
    this.#mergeTimer.unref?.();
  }

  /** Insert up to `limit` of a pack's pending entries (those not merged yet); returns whether any are left. */
  #mergeSlice(pack: number, limit: number): boolean {
    this.#materializeDeferred();
    const table = this.#deferred.get(pack);
    if (table === undefined) return false;
    const done = this.#merged.get(pack) ?? 0;
    const cols = table.columns();
    const end = Math.min(cols.size, done + limit);
    const order = this.#mergeOrder.get(pack) ?? sortedByHash(cols.hashes, cols.size);
    this.#mergeOrder.set(pack, order);
    const ins = this.db.query<unknown, [Uint8Array, number, number, number]>("INSERT OR IGNORE INTO chunks(hash, pack, offset, length) VALUES (?, ?, ?, ?)");
    this.db.transaction(() => {
      for (let k = done; k < end; k++) {
        const i = order[k]!;
        ins.run(cols.hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES), cols.pack[i]!, cols.offset[i]!, cols.length[i]!);
      }
      if (end === cols.size) {
        this.db.run("DELETE FROM pending_index WHERE pack = ?", [pack]);
        this.db.run("DELETE FROM pending_raw WHERE grp = ?", [pack]);
      }
    })();
    if (end < cols.size) {
      this.#merged.set(pack, end);
      return true;
    }
    this.#deferred.delete(pack);
    this.#merged.delete(pack);
    this.#mergeOrder.delete(pack);
    return false;
  }

  /** @internal */
  readFd(pack: number): number {
    return this.#readFd(pack);
  }

  /** @internal */
  writerClosed(w: ChunkWriter): void {
    this.#writers.delete(w);
  }

  /** @internal Remove a pack an aborted writer made. */
  dropPack(id: number): void {
    this.#dropPack(id);
  }

  #auto(): ChunkWriter {
    this.#assertOpen();
    if (this.#autoWriter === undefined) {
      this.#autoWriter = new ChunkWriter(this, "auto");
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
    const file = this.packFile(id);
    this.db.run("DELETE FROM packs WHERE id = ?", [id]);
    const fd = this.#readFds.get(id);
    if (fd !== undefined) {
      fs.closeSync(fd);
      this.#readFds.delete(id);
    }
    fs.rmSync(file, { force: true });
    this.#rawPacks.delete(id);
  }

  /** Copy a pack's live records into a fresh pack, repoint the index, delete the old one. */
  #rewritePack(id: number): void {
    const rows = this.db.query<Row & { hash: Uint8Array }, [number]>("SELECT hash, pack, offset, length FROM chunks WHERE pack = ? ORDER BY offset").all(id);
    const isRaw = this.#rawPacks.has(id);
    const appender = new PackAppender(this.#packDir, this.maxPackBytes, () => this.newPackId());
    const moved: Array<[Uint8Array, RecordLocation]> = [];
    const fd = this.#readFd(id);
    try {
      for (const row of rows) {
        // A record that fails verification is moved as it is, not dropped:
        // the next read names it, and gc must never hide damage.
        let data: Uint8Array;
        try {
          data = this.readRecord(row.hash, row, fd);
        } catch {
          data = isRaw ? readAt(fd, row.length, row.offset) : readAt(fd, RECORD_HEADER_BYTES + row.length, row.offset).subarray(RECORD_HEADER_BYTES);
        }
        moved.push([row.hash, appender.append(row.hash, data)]);
      }
      appender.sync(this.isDurable);
      const upd = this.db.query<unknown, [number, number, Uint8Array]>("UPDATE chunks SET pack = ?, offset = ? WHERE hash = ?");
      const size = this.db.query<unknown, [number, number]>("UPDATE packs SET size = ? WHERE id = ?");
      this.db.transaction(() => {
        for (const [h, loc] of moved) upd.run(loc.pack, loc.offset, h);
        for (const p of appender.packs) size.run(p.flushed, p.id);
        this.db.run("DELETE FROM packs WHERE id = ?", [id]);
      })();
    } catch (e) {
      appender.closeFiles();
      for (const p of appender.packs) this.#dropPack(p.id);
      throw e;
    }
    appender.closeFiles();
    const old = this.#readFds.get(id);
    if (old !== undefined) {
      fs.closeSync(old);
      this.#readFds.delete(id);
    }
    fs.rmSync(this.packFile(id), { force: true });
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

/**
 * One checkpoint's, import's or transfer's view for writing: private packs,
 * an uncommitted set of new chunks, and pins on every chunk it touched.
 */
export class ChunkWriter {
  readonly store: ChunkStore;
  readonly label: string;
  readonly #appender: PackAppender;
  /** New chunks, not yet in the index. Those in adopted raw packs may turn out to be stored already (INSERT OR IGNORE at commit). */
  #pending = new HashTable();
  /** Chunks of files adopted whole, not in #pending yet (see #materialize). */
  #segments: RawSegment[] = [];
  /** Chunk lists put whole by putHashedFile: every chunk of each is held (see covers). */
  readonly #covered = new WeakSet<Uint8Array>();
  /** Chunks this writer relies on that are in the index (found there, or committed by it): gc keeps them, missing() trusts them. */
  readonly #pinned = new HashTable();
  /** What earlier commits of this writer made visible: pinned as well (kept whole rather than copied into #pinned). */
  readonly #committed: HashTable[] = [];
  /** Chunks pinned by pin(): kept by gc, not known to be stored. */
  readonly #leased = new Set<string>();
  #isClosed = false;
  /** Bytes of new chunks written (not deduplicated); chunks of adopted files count when commit() finds them new. */
  newBytes = 0;
  newChunks = 0;

  /** @internal use ChunkStore.writer() */
  constructor(store: ChunkStore, label: string) {
    this.store = store;
    this.label = label;
    this.#appender = new PackAppender(store.packDir, store.maxPackBytes, () => store.newPackId());
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
   */
  putBatch(items: readonly ClaimedChunk[]): Hash[] {
    this.#assertOpen();
    const hashes: Hash[] = [];
    const bad: string[] = [];
    for (const { hash, bytes } of items) {
      const claimed = hashBytes(hash);
      if (bytes.byteLength > MAX_CHUNK_BYTES || !hashEquals(sha256(bytes), claimed)) bad.push(toHex(claimed));
      hashes.push(claimed);
    }
    if (bad.length > 0) throw new ChunkMismatchError(bad);
    items.forEach(({ bytes }, i) => {
      this.#putVerified(hashes[i]!, bytes);
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
    const n = fh.zero.length;
    const cs = fh.chunkSize;
    const lengthOf = (i: number) => Math.min(cs, fh.size - i * cs);
    // Candidates: neither zeros, nor vouched for, nor held by this writer. (Repeats within the
    // file are left to the pending table's own dedup, or to `local` when copying.)
    const cand: number[] = [];
    let candBytes = 0;
    for (let i = 0; i < n; i++) {
      if (fh.zero[i] === 1 || options.known?.[i] === 1) continue;
      const at = i * HASH_BYTES;
      if (this.#pending.has(fh.hashes, at) || this.#isPinned(fh.hashes, at)) continue;
      cand.push(i);
      candBytes += lengthOf(i);
    }
    const adoptShare = options.adoptShare ?? 0.5;
    // Candidates may be stored already (by another pod's image): a sample of them tells.
    const sample: Uint8Array[] = [];
    const step = Math.max(1, Math.floor(cand.length / 256));
    for (let k = 0; k < cand.length; k += step) sample.push(fh.hashes.subarray(cand[k]! * HASH_BYTES, (cand[k]! + 1) * HASH_BYTES));
    const newShare = sample.length === 0 ? 0 : this.store.missing(sample).length / sample.length;
    if (options.adopt && cand.length > 0 && candBytes * newShare >= adoptShare * fh.size && cs <= MAX_CHUNK_BYTES) {
      const pack = this.#appender.adopt(file, () => this.store.newRawPackId(), sha256(fh.hashes), cs);
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
    const lacking = new Set(this.store.missing(views));
    const take: number[] = [];
    cand.forEach((i, k) => {
      if (lacking.has(views[k]!)) take.push(i);
      else this.#pinned.add(fh.hashes, i * HASH_BYTES);
    });
    if (take.length === 0) {
      this.#covered.add(fh.hashes);
      return { adopted: false, candidates: cand.length };
    }
    const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    try {
      const maxRun = Math.max(1, Math.floor((4 << 20) / cs));
      for (let k = 0; k < take.length; ) {
        let end = k + 1;
        while (end < take.length && take[end] === take[end - 1]! + 1 && end - k < maxRun) end++;
        const first = take[k]!;
        const last = take[end - 1]!;
        const bytes = readAt(fd, last * cs + lengthOf(last) - first * cs, first * cs);
        for (let j = k; j < end; j++) {
          const i = take[j]!;
          const chunk = bytes.subarray((i - first) * cs, (i - first) * cs + lengthOf(i));
          const want = fh.hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES);
          if (chunk.byteLength !== lengthOf(i) || !hashEquals(sha256(chunk), want)) {
            throw new ChunkMismatchError([toHex(want)]);
          }
          this.#putVerified(want, chunk);
        }
        k = end;
      }
    } finally {
      fs.closeSync(fd);
    }
    this.#covered.add(fh.hashes);
    return { adopted: false, candidates: cand.length };
  }

  /**
   * Pin chunks the caller knows are stored now (say, because an image that
   * references them is in the catalogue at this very moment, with no await
   * since it checked). gc keeps them, and missing() trusts them without a query.
   */
  trustStored(hashes: Uint8Array, mask?: Uint8Array): void {
    this.#assertOpen();
    const n = hashes.byteLength / HASH_BYTES;
    for (let i = 0; i < n; i++) {
      if (mask !== undefined && mask[i] !== 1) continue;
      if (isZeroAt(hashes, i * HASH_BYTES)) continue;
      this.#pinned.add(hashes, i * HASH_BYTES);
    }
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
    if (this.#pending.has(src, at) || this.#isPinned(src, at)) return true;
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
    if (this.store.has(h)) {
      this.#pinned.add(h);
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
    const lacking = this.store.missing(ask);
    const lackSet = new Set(lacking);
    for (const h of ask) if (!lackSet.has(h)) this.#pinned.add(hashBytes(h));
    return lacking;
  }

  /** Pin chunks this writer will reference without writing them. */
  pin(hashes: Iterable<HashLike>): void {
    this.#assertOpen();
    for (const h of hashes) if (!isZeroHash(h)) this.#leased.add(hashHex(h));
  }

  /** A chunk's bytes, verified: this writer's uncommitted ones or the store's. */
  get(hash: HashLike): Uint8Array {
    const h = hashBytes(hash);
    this.#materialize();
    const i = this.#pending.indexOf(h);
    if (i < 0) return this.store.get(h);
    const loc = this.#pending.locationAt(i);
    if (this.#appender.isBuffered(loc)) this.#appender.flush();
    return this.store.readRecord(h, loc, this.#appender.fdOf(loc.pack)!);
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
    this.#appender.sync(this.store.isDurable);
    const db = this.store.db;
    const ins = db.query<unknown, [Uint8Array, number, number, number]>("INSERT OR IGNORE INTO chunks(hash, pack, offset, length) VALUES (?, ?, ?, ?)");
    const size = db.query<unknown, [number, number]>("UPDATE packs SET size = ? WHERE id = ?");
    const digest = db.query<unknown, [Uint8Array, number]>("UPDATE packs SET digest = ? WHERE id = ?");
    const adoptedPacks = this.#appender.adopted.filter((p) => p.committed === 0);
    const adopted = adoptedPacks.map((p) => p.id);
    const cols = this.#pending.columns();
    const segments = this.#segments;
    // With an adopted file, every chunk of this commit is indexed after it (see PENDING_ENTRY_BYTES).
    const deferTo = adopted.length > 0 && (cols.size > 0 || segments.length > 0) ? adopted[0]! : null;
    let adoptedNew = 0;
    let adoptedNewBytes = 0;
    if (deferTo !== null) {
      const isAdopted = new Set(adopted);
      for (let i = 0; i < cols.size; i++) {
        if (!isAdopted.has(cols.pack[i]!)) continue;
        adoptedNew++;
        adoptedNewBytes += cols.length[i]!;
      }
      for (const seg of segments) {
        adoptedNew += seg.cand.length;
        adoptedNewBytes += segmentBytes(seg);
      }
    }
    db.transaction(() => {
      if (deferTo !== null) {
        this.store.deferIndex(
          deferTo,
          this.#pending,
          adoptedPacks.map((p) => ({ id: p.id, chunkSize: p.chunkSize! })),
        );
      } else {
        // In hash order: neighbouring keys share B-tree pages.
        const order = sortedByHash(cols.hashes, cols.size);
        for (let k = 0; k < cols.size; k++) {
          const i = order[k]!;
          ins.run(cols.hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES), cols.pack[i]!, cols.offset[i]!, cols.length[i]!);
        }
      }
      for (const p of this.#appender.all) {
        if (p.flushed > p.committed) size.run(p.flushed, p.id);
        if (p.isRaw && p.committed === 0 && p.digest) digest.run(p.digest, p.id);
      }
      alsoInTransaction?.();
    })();
    for (const p of this.#appender.all) p.committed = p.flushed;
    this.#segments = [];
    if (deferTo !== null) this.store.deferred(deferTo, this.#pending, segments);
    if (cols.size > 0) {
      this.#committed.push(this.#pending);
      this.#pending = new HashTable();
      // A writer that commits often (batches of a transfer) keeps lookups short.
      if (this.#committed.length > 4) {
        for (const t of this.#committed.splice(0)) for (const h of t.hashes()) this.#pinned.add(h);
      }
    }
    this.newChunks += adoptedNew;
    this.newBytes += adoptedNewBytes;
  }

  /** Discard uncommitted chunks and release every pin. */
  abort(): void {
    if (this.#isClosed) return;
    this.#appender.flush();
    this.#appender.closeFiles();
    for (const p of this.#appender.all) {
      if (p.committed === 0) this.store.dropPack(p.id);
      else if (p.flushed > p.committed && !p.isRaw) fs.truncateSync(packPath(this.store.packDir, p.id), p.committed);
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

  /** @internal Drop pins (the store's own auto-writer, after each call). */
  forget(): void {
    this.#pinned.clear();
    this.#committed.length = 0;
    this.#leased.clear();
  }

  /** @internal Every hash gc must keep for this writer. */
  *pinnedHashes(): Generator<Uint8Array> {
    yield* this.#pinned.hashes();
    for (const t of this.#committed) yield* t.hashes();
    for (const hex of this.#leased) yield Buffer.from(hex, "hex");
  }

  #isPinned(src: Uint8Array, at = 0): boolean {
    if (this.#pinned.has(src, at)) return true;
    for (const t of this.#committed) if (t.has(src, at)) return true;
    return false;
  }

  /** @internal */
  packIds(): number[] {
    return this.#appender.all.map((p) => p.id);
  }

  #putVerified(h: Hash, bytes: Uint8Array): void {
    this.#assertOpen();
    if (bytes.byteLength > MAX_CHUNK_BYTES) {
      throw new RangeError(`Chunk ${toHex(h)} is ${bytes.byteLength} bytes; the limit is ${MAX_CHUNK_BYTES}`);
    }
    if (this.#pending.has(h) || this.#isPinned(h)) return;
    if (this.store.has(h)) {
      this.#pinned.add(h);
      return;
    }
    const loc = this.#appender.append(h, bytes);
    this.#pending.add(h, 0, loc.pack, loc.offset, loc.length);
    this.newBytes += bytes.byteLength;
    this.newChunks++;
  }

  #assertOpen(): void {
    if (this.#isClosed) throw new Error(`The chunk writer "${this.label}" is closed`);
  }

  #finish(): void {
    this.#pinned.clear();
    this.#committed.length = 0;
    this.#leased.clear();
    this.#isClosed = true;
    this.store.writerClosed(this);
  }
}

function isZeroAt(b: Uint8Array, at: number): boolean {
  for (let k = 0; k < HASH_BYTES; k++) if (b[at + k] !== 0) return false;
  return true;
}

/** Indices 0..n-1 ordered by their hash's first 29 bits (a native sort of packed keys). */
function sortedByHash(hashes: Uint8Array, n: number): ArrayLike<number> {
  if (n < 2 || n >= 1 << 24) return Array.from({ length: n }, (_, i) => i);
  const keys = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const o = i * HASH_BYTES;
    const prefix = ((hashes[o]! << 21) | (hashes[o + 1]! << 13) | (hashes[o + 2]! << 5) | (hashes[o + 3]! >>> 3)) >>> 0;
    keys[i] = prefix * 16777216 + i;
  }
  keys.sort();
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = keys[i]! % 16777216;
  return out;
}

/** Bulk reads take neighbouring chunks this much at a time. */
const READ_RUN_BYTES = 4 << 20;

/** A slice of a background merge: short enough not to hold the agent's event loop for long. */
const MERGE_SLICE = 16_384;
const MERGE_DELAY_MS = 250;

/** The entries of `t` whose pack passes `keep`, in PENDING_ENTRY_BYTES columns. */
function encodePending(t: HashTable, keep: (pack: number) => boolean = () => true): Uint8Array {
  const c = t.columns();
  const rows: number[] = [];
  for (let i = 0; i < c.size; i++) if (keep(c.pack[i]!)) rows.push(i);
  const n = rows.length;
  const out = new Uint8Array(n * PENDING_ENTRY_BYTES);
  const offset = new Float64Array(n);
  const length = new Int32Array(n);
  const pack = new Int32Array(n);
  rows.forEach((i, k) => {
    out.set(c.hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES), k * HASH_BYTES);
    offset[k] = c.offset[i]!;
    length[k] = c.length[i]!;
    pack[k] = c.pack[i]!;
  });
  out.set(new Uint8Array(offset.buffer), n * 32);
  out.set(new Uint8Array(length.buffer), n * 40);
  out.set(new Uint8Array(pack.buffer), n * 44);
  return out;
}

/**
 * Add every chunk of an adopted raw pack but zeros to `table`, hashing the
 * file again: after a restart, for chunks committed but not merged yet. A
 * file cut short yields what it still holds; what the images expect of it
 * and cannot find is reported, by hash, when they are read.
 */
function indexRawPack(file: string, pack: number, chunkSize: number, table: HashTable): void {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  } catch {
    return;
  }
  try {
    const size = fs.fstatSync(fd).size;
    const step = Math.max(1, Math.floor((4 << 20) / chunkSize)) * chunkSize;
    for (let pos = 0; pos < size; pos += step) {
      const block = readAt(fd, Math.min(step, size - pos), pos);
      for (let off = 0; off < block.byteLength; off += chunkSize) {
        const chunk = block.subarray(off, Math.min(block.byteLength, off + chunkSize));
        if (isAllZero(chunk)) continue;
        table.add(sha256(chunk), 0, pack, pos + off, chunk.byteLength);
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}

function decodePending(entries: Uint8Array): HashTable {
  const n = Math.floor(entries.byteLength / PENDING_ENTRY_BYTES);
  const copy = entries.slice(0, n * PENDING_ENTRY_BYTES); // aligned, for the typed views
  const offset = new Float64Array(copy.buffer, n * 32, n);
  const length = new Int32Array(copy.buffer, n * 40, n);
  const pack = new Int32Array(copy.buffer, n * 44, n);
  const t = new HashTable(n);
  for (let i = 0; i < n; i++) t.add(copy, i * HASH_BYTES, pack[i]!, offset[i]!, length[i]!);
  return t;
}

/** The new chunks of a file adopted whole as a raw pack: its chunk list, and which of them (cand) are new. */
interface RawSegment {
  pack: number;
  hashes: Uint8Array;
  cand: Int32Array;
  chunkSize: number;
  size: number;
}

function segmentLength(seg: RawSegment, i: number): number {
  return Math.min(seg.chunkSize, seg.size - i * seg.chunkSize);
}

function segmentBytes(seg: RawSegment): number {
  let n = 0;
  for (const i of seg.cand) n += segmentLength(seg, i);
  return n;
}

/** Entries for a segment's chunks (in place in its raw pack); returns how many were new to the table. */
function addSegment(table: HashTable, seg: RawSegment): number {
  table.reserve(table.size + seg.cand.length);
  let added = 0;
  for (const i of seg.cand) if (table.add(seg.hashes, i * HASH_BYTES, seg.pack, i * seg.chunkSize, segmentLength(seg, i)).added) added++;
  return added;
}
