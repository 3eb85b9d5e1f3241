/**
 * The image catalogue: manifests by image id (hex SHA-256 of the manifest
 * bytes), in the chunk store's own database so an image and its chunks commit
 * in one transaction. Which chunks an image references is read from its
 * manifest when needed (gc, list) rather than indexed per chunk: a per-chunk
 * table doubled the commit time of a checkpoint (bench/store.ts).
 */
import type { SpaceReserve } from "./space-reserve.ts";
import { AutopodError, NotFoundError } from "../errors.ts";
import {
  type ChunkRef,
  type Manifest,
  chunkCount,
  chunkHash,
  chunkLength,
  decodeManifest,
  encodeManifest,
  imageIdOf,
  logicalBytes,
  treesOf,
  uniqueChunkRefs,
} from "../image/manifest.ts";
import type { ChunkStore, ChunkWriter, GcOptions, GcResult } from "./chunk-store.ts";
import type { OnProgress } from "../progress.ts";
import { MissingChunkError } from "./errors.ts";
import { HASH_BYTES, type Hash, isHexHash, toHex } from "../image/hash.ts";

/** A row of `autopod images`. */
export interface ImageInfo {
  id: string;
  pod: string;
  createdAt: string;
  /** Sum of the image's file sizes, zero pages included. */
  logicalBytes: number;
  /** Bytes of the distinct chunks the image references. */
  referencedBytes: number;
  /** Bytes of chunks no other image references: what removing it would free. */
  uniqueBytes: number;
  parent: string | null;
}

/** A stored manifest whose bytes no longer hash to its image id. */
export class CorruptManifestError extends AutopodError {
  override name = "CorruptManifestError";
  readonly imageId: string;
  constructor(id: string) {
    super("internal", `The manifest of image ${id} is corrupt: its bytes no longer match its id`);
    this.imageId = id;
  }
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS images(
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  pod TEXT NOT NULL,
  created_at TEXT NOT NULL,
  parent TEXT,
  logical_bytes INTEGER NOT NULL,
  manifest BLOB NOT NULL
);
`;

type ImageRow = { seq: number; id: string; pod: string; created_at: string; parent: string | null; logical_bytes: number };

/** The most chunk-list bytes of recent manifests a catalogue keeps decoded (1 GiB of pages lists 8 MiB). */
const RECENT_BYTES = 64 << 20;

function chunkListBytes(m: Manifest): number {
  let n = 0;
  for (const t of treesOf(m)) for (const e of t.entries) n += e.chunks.byteLength;
  return n;
}

export class ImageCatalogue {
  readonly store: ChunkStore;
  /** Space kept for rm and gc on a full disk (the agent holds one; tests may not). */
  readonly #reserve: SpaceReserve | null;

  /**
   * Manifests added or read lately, decoded, by id (oldest first): a restore
   * right after its checkpoint neither reads back nor hashes nor decodes its
   * chunk lists again. What was checked against its id once stays what it was.
   */
  readonly #recent = new Map<string, { manifest: Manifest; bytes: number }>();
  #recentBytes = 0;

  #remember(id: string, manifest: Manifest): void {
    this.#forget(id);
    const bytes = chunkListBytes(manifest);
    if (bytes > RECENT_BYTES) return;
    this.#recent.set(id, { manifest, bytes });
    this.#recentBytes += bytes;
    for (const [old, r] of this.#recent) {
      if (this.#recentBytes <= RECENT_BYTES) break;
      this.#recent.delete(old);
      this.#recentBytes -= r.bytes;
    }
  }

  #forget(id: string): void {
    const r = this.#recent.get(id);
    if (r === undefined) return;
    this.#recent.delete(id);
    this.#recentBytes -= r.bytes;
  }

  constructor(store: ChunkStore, options: { reserve?: SpaceReserve } = {}) {
    this.store = store;
    this.#reserve = options.reserve ?? null;
    store.db.exec(SCHEMA);
  }

  /** Run a way out of a full disk: with the reserve released and fn run again if it fails for lack of space. */
  #freeing<T>(fn: () => T): T {
    return this.#reserve ? this.#reserve.withSpace(fn) : fn();
  }

  /**
   * Record an image. Every chunk it references must be in the store or
   * written by `writer`, whose chunks commit in the same transaction. Returns
   * the image id; adding an image twice is a no-op. `alsoRecord` runs in the
   * same transaction (the image's provenance commits with it).
   */
  add(manifestBytes: Uint8Array, writer?: ChunkWriter, alsoRecord?: () => void): string {
    return this.#add(manifestBytes, decodeManifest(manifestBytes), writer, alsoRecord);
  }

  /** `manifest` is what `manifestBytes` encode (its chunk lists may be the very arrays the writer put: see covers). */
  #add(manifestBytes: Uint8Array, manifest: Manifest, writer?: ChunkWriter, alsoRecord?: () => void): string {
    const id = imageIdOf(manifestBytes);
    // Chunks the writer holds or pinned need no query: with a checkpoint's writer, that is nearly all.
    const ask: ChunkRef[] = [];
    for (const t of treesOf(manifest)) {
      for (const e of t.entries) {
        if (e.type !== "file" || writer?.covers(e.chunks)) continue;
        const n = chunkCount(e);
        for (let i = 0; i < n; i++) {
          if (isZeroAt(e.chunks, i * HASH_BYTES) || writer?.holds(e.chunks, i * HASH_BYTES)) continue;
          ask.push({ hash: chunkHash(e, i), length: chunkLength(e, i), tree: t.name, path: e.path });
        }
      }
    }
    const hashes = ask.map((r) => r.hash);
    const lacking = writer !== undefined ? writer.missing(hashes) : this.store.missing(hashes);
    if (lacking.length > 0) {
      const first = ask[hashes.indexOf(lacking[0]!)]!;
      throw new MissingChunkError(toHex(first.hash), {
        path: `${first.tree}/${first.path}`,
        cause: new Error(`${new Set(lacking.map((h) => toHex(h))).size} chunk(s) of image ${id} are missing`),
      });
    }
    const db = this.store.db;
    const record = () => {
      db.query<unknown, [string, string, string, string | null, number, Uint8Array]>(
        "INSERT OR IGNORE INTO images(id, pod, created_at, parent, logical_bytes, manifest) VALUES (?, ?, ?, ?, ?, ?)",
      ).run(id, manifest.pod.name, manifest.createdAt, manifest.parent, logicalBytes(manifest), manifestBytes);
      alsoRecord?.();
    };
    if (writer !== undefined) writer.commit(record);
    else db.transaction(record)();
    this.#remember(id, manifest);
    return id;
  }

  /** Encode, validate and record a manifest; returns the image id. */
  addManifest(manifest: Manifest, writer?: ChunkWriter): string {
    return this.#add(encodeManifest(manifest), manifest, writer);
  }

  /** Record a manifest whose validated bytes (encodeManifest, or checked by decodeManifest) are `manifestBytes`, with `alsoRecord` in its transaction. */
  addEncoded(manifestBytes: Uint8Array, manifest: Manifest, writer?: ChunkWriter, alsoRecord?: () => void): string {
    return this.#add(manifestBytes, manifest, writer, alsoRecord);
  }

  /** Ids of the images whose id starts with `prefix` (hex), without reading any manifest. */
  idsStartingWith(prefix: string): string[] {
    if (!/^[0-9a-f]{0,64}$/.test(prefix)) return [];
    return this.store.db
      .query<{ id: string }, [string]>("SELECT id FROM images WHERE id >= ?1 AND substr(id, 1, length(?1)) = ?1 ORDER BY id LIMIT 16")
      .all(prefix)
      .map((r) => r.id);
  }

  /** The newest image of a pod (the parent of its next checkpoint), or null. */
  latestOf(pod: string): string | null {
    const row = this.store.db.query<{ id: string }, [string]>("SELECT id FROM images WHERE pod = ? ORDER BY created_at DESC, seq DESC LIMIT 1").get(pod);
    return row?.id ?? null;
  }

  /** Other images of the same pod as image `id`, newest first (at most `limit`). */
  relativesOf(id: string, limit: number): string[] {
    return this.store.db
      .query<{ id: string }, [string, number]>(
        "SELECT id FROM images WHERE pod = (SELECT pod FROM images WHERE id = ?1) AND id != ?1 ORDER BY created_at DESC, seq DESC LIMIT ?2",
      )
      .all(id, limit)
      .map((r) => r.id);
  }

  has(id: string): boolean {
    return isHexHash(id) && this.store.db.query("SELECT 1 FROM images WHERE id = ?").get(id) !== null;
  }

  /** The manifest's bytes, checked against the id. */
  manifestBytes(id: string): Uint8Array {
    const row = this.store.db.query<{ manifest: Uint8Array }, [string]>("SELECT manifest FROM images WHERE id = ?").get(id);
    if (row === null) throw new NotFoundError(`Image "${id}" is not in the catalogue`);
    if (imageIdOf(row.manifest) !== id) throw new CorruptManifestError(id);
    return row.manifest;
  }

  /** The decoded, validated manifest. */
  manifest(id: string): Manifest {
    const known = this.#recent.get(id);
    if (known !== undefined && this.has(id)) return known.manifest;
    const m = decodeManifest(this.manifestBytes(id));
    this.#remember(id, m);
    return m;
  }

  /** Every image, oldest first, with the bytes only it stores. */
  list(): ImageInfo[] {
    const it = this.#listSteps();
    for (;;) {
      const step = it.next();
      if (step.done) return step.value;
    }
  }

  /** As list(), letting the event loop turn between images (`yieldNow`), so a long listing does not hold up other requests. */
  async listYielding(yieldNow: () => Promise<void>): Promise<ImageInfo[]> {
    const it = this.#listSteps();
    for (;;) {
      const step = it.next();
      if (step.done) return step.value;
      await yieldNow();
    }
  }

  /** The listing, pausing (yield) after each image's manifest is read. */
  *#listSteps(): Generator<void, ImageInfo[]> {
    const rows = this.store.db.query<ImageRow, []>("SELECT seq, id, pod, created_at, parent, logical_bytes FROM images ORDER BY created_at, seq").all();
    // How many images use each stored chunk, then each image's share.
    const refsOf = new Map<string, Array<{ hex: string; length: number }>>();
    const users = new Map<string, number>();
    for (const r of rows) {
      if (!this.has(r.id)) continue; // removed while the listing paused
      const refs = uniqueChunkRefs(this.manifest(r.id));
      const lacking = new Set(this.store.missing(refs.map((x) => x.hash)));
      const stored = refs.filter((x) => !lacking.has(x.hash)).map((x) => ({ hex: toHex(x.hash), length: x.length }));
      refsOf.set(r.id, stored);
      for (const x of stored) users.set(x.hex, (users.get(x.hex) ?? 0) + 1);
      yield;
    }
    return rows
      .filter((r) => refsOf.has(r.id))
      .map((r) => {
        let referencedBytes = 0;
        let uniqueBytes = 0;
        for (const x of refsOf.get(r.id)!) {
          referencedBytes += x.length;
          if (users.get(x.hex) === 1) uniqueBytes += x.length;
        }
        return {
          id: r.id,
          pod: r.pod,
          createdAt: r.created_at,
          logicalBytes: r.logical_bytes,
          referencedBytes,
          uniqueBytes,
          parent: r.parent,
        };
      });
  }

  /** Logical bytes of all images against what the store holds for them. */
  stats(): { images: number; logicalBytes: number; storedBytes: number; packBytes: number } {
    const row = this.store.db.query<{ n: number; bytes: number | null }, []>("SELECT COUNT(*) AS n, SUM(logical_bytes) AS bytes FROM images").get()!;
    const s = this.store.stats();
    return { images: row.n, logicalBytes: row.bytes ?? 0, storedBytes: s.storedBytes, packBytes: s.packBytes };
  }

  /** One image's row. */
  info(id: string): ImageInfo {
    const found = this.list().find((i) => i.id === id);
    if (found === undefined) throw new NotFoundError(`Image "${id}" is not in the catalogue`);
    return found;
  }

  /** Forget an image; its chunks go at the next gc unless another image or a writer holds them. */
  remove(id: string): void {
    const db = this.store.db;
    const changes = this.#freeing(() => db.query<unknown, [string]>("DELETE FROM images WHERE id = ?").run(id).changes);
    this.#forget(id);
    if (changes === 0) throw new NotFoundError(`Image "${id}" is not in the catalogue`);
  }

  /** Every chunk hash some image references (read from the manifests). */
  referencedHashes(): Hash[] {
    const out: Hash[] = [];
    const ids = this.store.db.query<{ id: string }, []>("SELECT id FROM images").all();
    for (const { id } of ids) for (const r of uniqueChunkRefs(this.manifest(id))) out.push(r.hash);
    return out;
  }

  /**
   * As gc(), with the images' chunk lists read first and the event loop
   * turning between images (`yieldNow`), so a gc over many or large images
   * does not hold up other requests. Images committed meanwhile are read
   * inside the gc step; images removed meanwhile only keep their chunks until
   * the next gc.
   */
  async gcYielding(yieldNow: () => Promise<void>, onProgress?: OnProgress, options: GcOptions = {}): Promise<GcResult> {
    const idsNow = () => this.store.db.query<{ id: string }, []>("SELECT id FROM images").all();
    const read = new Set<string>();
    const live: Hash[] = [];
    for (const { id } of idsNow()) {
      if (!this.has(id)) continue;
      for (const r of uniqueChunkRefs(this.manifest(id))) live.push(r.hash);
      read.add(id);
      onProgress?.({ phase: "reading images", bytes: 0, totalBytes: null });
      await yieldNow();
    }
    // The store's gc is one synchronous step (the live set read inside it): a phase without bytes.
    if (onProgress) {
      onProgress({ phase: "collecting", bytes: 0, totalBytes: null });
      await new Promise((r) => setTimeout(r, 0)); // let the line go out before the step holds the thread
    }
    return this.store.gc(() => {
      for (const { id } of idsNow()) if (!read.has(id)) for (const r of uniqueChunkRefs(this.manifest(id))) live.push(r.hash);
      return live;
    }, options);
  }

  /**
   * Remove chunks no image references (open writers' pins are kept). The live
   * set is read inside the store's gc step, so an image that commits
   * meanwhile cannot lose its chunks.
   */
  gc(options: GcOptions = {}): GcResult {
    // On a full disk, compacting packs (which writes new ones first) waits for a gc with room.
    return this.#freeing(() => this.store.gc(() => this.referencedHashes(), options));
  }
}

function isZeroAt(b: Uint8Array, at: number): boolean {
  for (let k = 0; k < HASH_BYTES; k++) if (b[at + k] !== 0) return false;
  return true;
}
