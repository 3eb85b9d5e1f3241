/**
 * Garbage collection of the chunk store: remove every chunk that no live image
 * references and no open writer pins, then compact the packs that became
 * mostly garbage (copy their live records into fresh packs, repoint the index,
 * delete the old files). Synchronous: nothing can commit in between.
 */
import type { Database } from "bun:sqlite";
import { type HashLike, hashBytes, isZeroHash } from "../image/hash.ts";
import { PACK_HEADER_BYTES, PackAppender, RECORD_HEADER_BYTES, type RecordLocation, readAt } from "./_pack.ts";

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

/** Sizes gc reads before and after. */
export interface PackBytes {
  packBytes: number;
}

/** What gc needs of the store: given by ChunkStore.gc(), not part of the store's API. */
export interface GcHost {
  readonly db: Database;
  readonly isDurable: boolean;
  readonly packDir: string;
  readonly maxPackBytes: number;
  /** Every hash an open writer pins. */
  pinnedHashes(): Iterable<Uint8Array>;
  /** The packs open writers are writing: neither dropped nor rewritten. */
  busyPacks(): Set<number>;
  isRawPack(pack: number): boolean;
  readFd(pack: number): number;
  /** A record's bytes read through `fd`, verified against `h` and the index. */
  readRecord(h: Uint8Array, at: RecordLocation, fd: number): Uint8Array;
  newPackId(): number;
  /** Delete a pack: its row and its file. */
  dropPack(id: number): void;
  /** Delete the file of a pack whose row is gone, closing what reads it. */
  removePackFile(id: number): void;
  stats(): PackBytes;
}

/**
 * Remove every chunk that is neither in `live` nor pinned by an open writer,
 * then compact packs that became mostly garbage. `live` as a function is
 * called inside the same synchronous step that deletes.
 */
export function collectGarbage(host: GcHost, live: Iterable<HashLike> | (() => Iterable<HashLike>), options: GcOptions = {}): GcResult {
  const before = host.stats();
  const compactBelow = options.compactBelow ?? 0.5;
  host.db.exec("CREATE TEMP TABLE IF NOT EXISTS gc_live(h BLOB PRIMARY KEY) WITHOUT ROWID");
  let removed = { n: 0, bytes: 0 };
  host.db.transaction(() => {
    host.db.exec("DELETE FROM temp.gc_live");
    const add = host.db.query<unknown, [Uint8Array]>("INSERT OR IGNORE INTO temp.gc_live(h) VALUES (?)");
    const liveHashes = typeof live === "function" ? live() : live;
    for (const h of liveHashes) if (!isZeroHash(h)) add.run(hashBytes(h));
    for (const h of host.pinnedHashes()) add.run(h);
    const dead = host.db
      .query<{ n: number; bytes: number | null }, []>("SELECT COUNT(*) AS n, SUM(length) AS bytes FROM chunks WHERE hash NOT IN (SELECT h FROM temp.gc_live)")
      .get()!;
    removed = { n: dead.n, bytes: dead.bytes ?? 0 };
    host.db.run("DELETE FROM chunks WHERE hash NOT IN (SELECT h FROM temp.gc_live)");
    host.db.exec("DELETE FROM temp.gc_live");
  })();

  const busy = host.busyPacks();
  // One scan of the chunks (there is no index by pack), then the packs.
  const liveOf = new Map<number, number>();
  for (const [pack, live] of host.db.query<[number, number], []>("SELECT pack, SUM(length) FROM chunks GROUP BY pack").values() as Array<[number, number]>) {
    liveOf.set(pack, live);
  }
  const packs = host.db.query<{ id: number; size: number; raw: number }, []>("SELECT id, size, raw FROM packs ORDER BY id").all();
  const countOf = new Map<number, number>();
  for (const [pack, n] of host.db.query<[number, number], []>("SELECT pack, COUNT(*) FROM chunks GROUP BY pack").values() as Array<[number, number]>) {
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
      host.dropPack(p.id);
      packsDeleted++;
    } else if (live / Math.max(1, payload) < compactBelow) {
      toRewrite.push(p.id);
    }
  }
  for (const id of toRewrite) rewritePack(host, id);
  const after = host.stats();
  return {
    removedChunks: removed.n,
    removedBytes: removed.bytes,
    packsDeleted: packsDeleted + toRewrite.length,
    packsRewritten: toRewrite.length,
    packBytesBefore: before.packBytes,
    packBytesAfter: after.packBytes,
  };
}

/** Copy a pack's live records into a fresh pack, repoint the index, delete the old one. */
function rewritePack(host: GcHost, id: number): void {
  const rows = host.db
    .query<RecordLocation & { hash: Uint8Array }, [number]>("SELECT hash, pack, offset, length FROM chunks WHERE pack = ? ORDER BY offset")
    .all(id);
  const isRaw = host.isRawPack(id);
  const appender = new PackAppender(host.packDir, host.maxPackBytes, () => host.newPackId());
  const moved: Array<[Uint8Array, RecordLocation]> = [];
  const fd = host.readFd(id);
  try {
    for (const row of rows) {
      // A record that fails verification is moved as it is, not dropped:
      // the next read names it, and gc must never hide damage.
      let data: Uint8Array;
      try {
        data = host.readRecord(row.hash, row, fd);
      } catch {
        data = isRaw ? readAt(fd, row.length, row.offset) : readAt(fd, RECORD_HEADER_BYTES + row.length, row.offset).subarray(RECORD_HEADER_BYTES);
      }
      moved.push([row.hash, appender.append(row.hash, data)]);
    }
    appender.sync(host.isDurable);
    const upd = host.db.query<unknown, [number, number, Uint8Array]>("UPDATE chunks SET pack = ?, offset = ? WHERE hash = ?");
    const size = host.db.query<unknown, [number, number]>("UPDATE packs SET size = ? WHERE id = ?");
    host.db.transaction(() => {
      for (const [h, loc] of moved) upd.run(loc.pack, loc.offset, h);
      for (const p of appender.packs) size.run(p.flushed, p.id);
      host.db.run("DELETE FROM packs WHERE id = ?", [id]);
    })();
  } catch (e) {
    appender.closeFiles();
    for (const p of appender.packs) host.dropPack(p.id);
    throw e;
  }
  appender.closeFiles();
  host.removePackFile(id);
}
