/**
 * The pending index. A commit that adopted a file indexes its chunks after
 * the commit, in the background: 262,144 index inserts per GiB cost more than
 * the rest of a checkpoint. The commit records them durably as one row of
 * pending_index (keyed by the adopted pack's id; entries in columns: n 32-byte
 * hashes, n f64 LE offsets, n u32 LE lengths, n u32 LE packs), which the store
 * reads back into memory, answers from, and merges into chunks in small
 * transactions; a crash mid-merge only means merging again.
 *
 * The store owns one; a writer records its adopted files' chunks in it inside
 * its commit transaction (record) and hands them over after it (add).
 */
import type { Database } from "bun:sqlite";
import fs from "node:fs";
import { HASH_BYTES, isAllZero, sha256 } from "../image/hash.ts";
import { HashTable } from "../image/hash-table.ts";
import { sortedByHash } from "./_entries.ts";
import { type RecordLocation, readAt } from "./_pack.ts";

/** Bytes per entry of a pending_index row. */
const PENDING_ENTRY_BYTES = 48;

/** A slice of a background merge: short enough not to hold the agent's event loop for long. */
const MERGE_SLICE = 16_384;
const MERGE_DELAY_MS = 250;

/** Committed chunks not yet in the chunks table, answered from memory and merged in the background. */
export class PendingIndex {
  readonly #db: Database;
  /** Committed chunks not yet in the chunks table, by pack (see PENDING_ENTRY_BYTES). */
  readonly #deferred = new Map<number, HashTable>();
  /** Adopted files' chunks handed over by add(), not entries of their table yet, by group. */
  readonly #segments = new Map<number, RawSegment[]>();
  #mergeTimer: ReturnType<typeof setTimeout> | null = null;
  #mergeHolds = 0;
  /** How far the background merge has gone, by pack, and in which order it goes. */
  readonly #merged = new Map<number, number>();
  readonly #mergeOrder = new Map<number, ArrayLike<number>>();
  #isClosed = false;

  /**
   * Read back what earlier commits recorded and no merge finished.
   * `rawPackFile`: the file of an adopted (raw) pack the store has, or null.
   */
  constructor(db: Database, rawPackFile: (pack: number) => string | null) {
    this.#db = db;
    for (const r of db.query<{ pack: number; entries: Uint8Array }, []>("SELECT pack, entries FROM pending_index").all()) {
      this.#deferred.set(r.pack, decodePending(r.entries));
    }
    // An adopted file's chunks are recorded by the file alone: hash it again.
    for (const r of db.query<{ pack: number; grp: number; chunk_size: number }, []>("SELECT pack, grp, chunk_size FROM pending_raw").all()) {
      let table = this.#deferred.get(r.grp);
      if (table === undefined) this.#deferred.set(r.grp, (table = new HashTable()));
      const file = rawPackFile(r.pack);
      if (file !== null) indexRawPack(file, r.pack, r.chunk_size, table);
    }
  }

  /** Whether nothing is pending (then lookups need not ask). */
  get isEmpty(): boolean {
    return this.#deferred.size === 0;
  }

  /** Number of pending entries. */
  get size(): number {
    this.#materialize();
    let n = 0;
    for (const t of this.#deferred.values()) n += t.size;
    return n;
  }

  /** Where a pending chunk (32 bytes at `at` of `src`) is, or null. */
  locationOf(src: Uint8Array, at = 0): RecordLocation | null {
    for (const t of this.#deferred.values()) {
      const i = t.indexOf(src, at);
      if (i >= 0) return t.locationAt(i);
    }
    // Not among the entries: perhaps in a segment (made entries now, once).
    if (this.#segments.size === 0) return null;
    this.#materialize();
    return this.locationOf(src, at);
  }

  /**
   * Record a writer's chunks of adopted files as pending, inside its commit
   * transaction; they are visible as soon as it commits.
   */
  record(pack: number, table: HashTable, raw: ReadonlyArray<{ id: number; chunkSize: number }> = []): void {
    // Chunks of adopted files are not written out one by one: the file itself says what they
    // are, and is hashed again if the agent stops before they are merged (see indexRawPack).
    const isRaw = new Set(raw.map((r) => r.id));
    this.#db.query<unknown, [number, Uint8Array]>("INSERT OR REPLACE INTO pending_index(pack, entries) VALUES (?, ?)").run(
      pack,
      encodePending(table, (p) => !isRaw.has(p)),
    );
    const ins = this.#db.query<unknown, [number, number, number]>("INSERT OR REPLACE INTO pending_raw(pack, grp, chunk_size) VALUES (?, ?, ?)");
    for (const r of raw) ins.run(r.id, pack, r.chunkSize);
  }

  /**
   * After the commit of record(): answer from the table (and the adopted
   * files' segments, made entries on the first lookup or merge), and merge it soon.
   */
  add(pack: number, table: HashTable, segments: readonly RawSegment[] = []): void {
    this.#deferred.set(pack, table);
    if (segments.length > 0) this.#segments.set(pack, [...(this.#segments.get(pack) ?? []), ...segments]);
    // Not at once: the checkpoint that committed is still finishing (stopping its pod).
    this.mergeSoon(MERGE_DELAY_MS);
  }

  /** Make entries of the segments handed over by add() (once; cheap when there are none). */
  #materialize(): void {
    if (this.#segments.size === 0) return;
    for (const [pack, segments] of this.#segments) {
      const table = this.#deferred.get(pack);
      if (table !== undefined) for (const seg of segments) addSegment(table, seg);
    }
    this.#segments.clear();
  }

  /**
   * Hold background merging while something that wants both cores runs (a
   * checkpoint or a restore): pending chunks are answered from memory
   * meanwhile. Returns the release; merging goes on when the last is released.
   */
  hold(): () => void {
    this.#mergeHolds++;
    let isReleased = false;
    return () => {
      if (isReleased) return;
      isReleased = true;
      if (--this.#mergeHolds === 0) this.mergeSoon(MERGE_DELAY_MS);
    };
  }

  /** Index every pending chunk now. */
  mergeAll(): void {
    for (const pack of [...this.#deferred.keys()]) while (this.#mergeSlice(pack, Infinity));
  }

  /** Stop merging for good (the store closes). */
  close(): void {
    if (this.#mergeTimer !== null) clearTimeout(this.#mergeTimer);
    this.#mergeTimer = null;
    this.#isClosed = true;
  }

  /** Merge in the background, slice by slice, after `delayMs`. */
  mergeSoon(delayMs = 0): void {
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
          this.mergeSoon();
        }, 1000);
        return;
      }
      this.mergeSoon();
    }, delayMs);
    this.#mergeTimer.unref?.();
  }

  /** Insert up to `limit` of a pack's pending entries (those not merged yet); returns whether any are left. */
  #mergeSlice(pack: number, limit: number): boolean {
    this.#materialize();
    const table = this.#deferred.get(pack);
    if (table === undefined) return false;
    const done = this.#merged.get(pack) ?? 0;
    const cols = table.columns();
    const end = Math.min(cols.size, done + limit);
    const order = this.#mergeOrder.get(pack) ?? sortedByHash(cols.hashes, cols.size);
    this.#mergeOrder.set(pack, order);
    const ins = this.#db.query<unknown, [Uint8Array, number, number, number]>("INSERT OR IGNORE INTO chunks(hash, pack, offset, length) VALUES (?, ?, ?, ?)");
    this.#db.transaction(() => {
      for (let k = done; k < end; k++) {
        const i = order[k]!;
        ins.run(cols.hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES), cols.pack[i]!, cols.offset[i]!, cols.length[i]!);
      }
      if (end === cols.size) {
        this.#db.run("DELETE FROM pending_index WHERE pack = ?", [pack]);
        this.#db.run("DELETE FROM pending_raw WHERE grp = ?", [pack]);
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
}

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
export interface RawSegment {
  pack: number;
  hashes: Uint8Array;
  cand: Int32Array;
  chunkSize: number;
  size: number;
}

function segmentLength(seg: RawSegment, i: number): number {
  return Math.min(seg.chunkSize, seg.size - i * seg.chunkSize);
}

export function segmentBytes(seg: RawSegment): number {
  let n = 0;
  for (const i of seg.cand) n += segmentLength(seg, i);
  return n;
}

/** Entries for a segment's chunks (in place in its raw pack); returns how many were new to the table. */
export function addSegment(table: HashTable, seg: RawSegment): number {
  table.reserve(table.size + seg.cand.length);
  let added = 0;
  for (const i of seg.cand) if (table.add(seg.hashes, i * HASH_BYTES, seg.pack, i * seg.chunkSize, segmentLength(seg, i)).added) added++;
  return added;
}
