/**
 * What a writer's commit (ChunkWriter.commit) writes to the index database
 * inside its transaction: its new chunks' rows, in batches, counting those
 * another writer stored first; and its packs' committed sizes and digests.
 * Also how many of its adopted files' chunks are new, for its counts.
 */
import type { Database } from "bun:sqlite";
import { HASH_BYTES } from "../image/hash.ts";
import { sortedByHash } from "./_entries.ts";
import type { OpenPack } from "./_pack.ts";
import { type RawSegment, segmentBytes } from "./pending-index.ts";

/** Index rows a commit inserts with one statement. */
const INSERT_ROWS = 64;

/** A writer's new chunks as HashTable.columns() gives them. */
export interface EntryColumns {
  hashes: Uint8Array;
  pack: Int32Array;
  offset: Float64Array;
  length: Int32Array;
  size: number;
}

/** Chunks and their bytes. */
export interface ChunkCount {
  chunks: number;
  bytes: number;
}

/** The chunks of a commit that sit in its adopted packs `adopted`, and those of its adopted files' segments. */
export function countAdoptedNew(cols: EntryColumns, adopted: readonly number[], segments: readonly RawSegment[]): ChunkCount {
  let chunks = 0;
  let bytes = 0;
  const isAdopted = new Set(adopted);
  for (let i = 0; i < cols.size; i++) {
    if (!isAdopted.has(cols.pack[i]!)) continue;
    chunks++;
    bytes += cols.length[i]!;
  }
  for (const seg of segments) {
    chunks += seg.cand.length;
    bytes += segmentBytes(seg);
  }
  return { chunks, bytes };
}

/**
 * Insert the rows of `cols` into the chunks table (inside the caller's
 * transaction); returns those that were there already (not new).
 */
export function insertEntries(db: Database, cols: EntryColumns): ChunkCount {
  const ins = db.query<unknown, [Uint8Array, number, number, number]>("INSERT OR IGNORE INTO chunks(hash, pack, offset, length) VALUES (?, ?, ?, ?)");
  const insMany = db.query<unknown, Array<Uint8Array | number>>(
    `INSERT OR IGNORE INTO chunks(hash, pack, offset, length) VALUES ${Array(INSERT_ROWS).fill("(?, ?, ?, ?)").join(", ")}`,
  );
  const isOurs = db.query<{ pack: number; offset: number }, [Uint8Array]>("SELECT pack, offset FROM chunks WHERE hash = ?");
  let duplicates = 0;
  let duplicateBytes = 0;
  // In hash order: neighbouring keys share B-tree pages. Rows go in INSERT_ROWS at a time (one
  // call into sqlite per group, not per chunk); a row that changes nothing was stored meanwhile
  // by another writer, or put with isExpectedNew: the index keeps the first copy, and it is not new.
  const order = sortedByHash(cols.hashes, cols.size);
  let k = 0;
  for (; k + INSERT_ROWS <= cols.size; k += INSERT_ROWS) {
    const args: Array<Uint8Array | number> = [];
    for (let j = k; j < k + INSERT_ROWS; j++) {
      const i = order[j]!;
      args.push(cols.hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES), cols.pack[i]!, cols.offset[i]!, cols.length[i]!);
    }
    const { changes } = insMany.run(...args);
    if (changes < INSERT_ROWS) {
      // Rare: find which, one by one, inside the same transaction (the group's rows are in already).
      for (let j = k; j < k + INSERT_ROWS; j++) {
        const i = order[j]!;
        const row = isOurs.get(cols.hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES));
        if (row === null || row.pack !== cols.pack[i]! || row.offset !== cols.offset[i]!) {
          duplicates++;
          duplicateBytes += cols.length[i]!;
        }
      }
    }
  }
  for (; k < cols.size; k++) {
    const i = order[k]!;
    const { changes } = ins.run(cols.hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES), cols.pack[i]!, cols.offset[i]!, cols.length[i]!);
    if (changes === 0) {
      duplicates++;
      duplicateBytes += cols.length[i]!;
    }
  }
  return { chunks: duplicates, bytes: duplicateBytes };
}

/** Record the packs' new committed sizes and raw packs' digests (inside the caller's transaction; markCommitted after it). */
export function recordPacks(db: Database, packs: readonly OpenPack[]): void {
  const size = db.query<unknown, [number, number]>("UPDATE packs SET size = ? WHERE id = ?");
  const digest = db.query<unknown, [Uint8Array, number]>("UPDATE packs SET digest = ? WHERE id = ?");
  for (const p of packs) {
    if (p.flushed > p.committed) size.run(p.flushed, p.id);
    if (p.isRaw && p.digest && !p.isDigestCommitted) digest.run(p.digest, p.id);
  }
}

/** After the transaction: what recordPacks recorded is committed. */
export function markCommitted(packs: readonly OpenPack[]): void {
  for (const p of packs) {
    p.committed = p.flushed;
    if (p.digest) p.isDigestCommitted = true;
  }
}
