/**
 * The image catalogue: manifests by image id (hex SHA-256 of the manifest
 * bytes), with the set of chunks each references, in the chunk store's own
 * database so an image and its chunks commit in one transaction.
 */
import { AutopodError, NotFoundError } from "../errors.ts";
import { type Manifest, decodeManifest, encodeManifest, imageIdOf, logicalBytes, uniqueChunkRefs } from "../checkpoint/manifest.ts";
import type { ChunkStore, ChunkWriter, GcOptions, GcResult } from "./chunk-store.ts";
import { MissingChunkError } from "./errors.ts";
import { type Hash, isHexHash, toHex } from "./hash.ts";

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
CREATE TABLE IF NOT EXISTS image_chunks(
  image INTEGER NOT NULL,
  hash BLOB NOT NULL,
  PRIMARY KEY(image, hash)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS image_chunks_by_hash ON image_chunks(hash);
`;

type ImageRow = { seq: number; id: string; pod: string; created_at: string; parent: string | null; logical_bytes: number };

export class ImageCatalogue {
  readonly store: ChunkStore;

  constructor(store: ChunkStore) {
    this.store = store;
    store.db.exec(SCHEMA);
  }

  /**
   * Record an image. Every chunk it references must be in the store or
   * written by `writer`, whose chunks commit in the same transaction. Returns
   * the image id; adding an image twice is a no-op.
   */
  add(manifestBytes: Uint8Array, writer?: ChunkWriter): string {
    const manifest = decodeManifest(manifestBytes);
    const id = imageIdOf(manifestBytes);
    const refs = uniqueChunkRefs(manifest);
    const hashes = refs.map((r) => r.hash);
    const lacking = writer !== undefined ? writer.missing(hashes) : this.store.missing(hashes);
    if (lacking.length > 0) {
      const first = refs[hashes.indexOf(lacking[0]!)]!;
      throw new MissingChunkError(toHex(first.hash), {
        path: `${first.tree}/${first.path}`,
        cause: new Error(`${lacking.length} chunk(s) of image ${id} are missing`),
      });
    }
    const db = this.store.db;
    const record = () => {
      if (db.query("SELECT 1 FROM images WHERE id = ?").get(id) !== null) return;
      const row = db
        .query<{ seq: number }, [string, string, string, string | null, number, Uint8Array]>(
          "INSERT INTO images(id, pod, created_at, parent, logical_bytes, manifest) VALUES (?, ?, ?, ?, ?, ?) RETURNING seq",
        )
        .get(id, manifest.pod.name, manifest.createdAt, manifest.parent, logicalBytes(manifest), manifestBytes)!;
      const ins = db.query<unknown, [number, Hash]>("INSERT OR IGNORE INTO image_chunks(image, hash) VALUES (?, ?)");
      for (const h of hashes) ins.run(row.seq, h);
    };
    if (writer !== undefined) writer.commit(record);
    else db.transaction(record)();
    return id;
  }

  /** Encode, validate and record a manifest; returns the image id. */
  addManifest(manifest: Manifest, writer?: ChunkWriter): string {
    return this.add(encodeManifest(manifest), writer);
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
    return decodeManifest(this.manifestBytes(id));
  }

  /** Every image, oldest first, with the bytes only it stores. */
  list(): ImageInfo[] {
    const db = this.store.db;
    const rows = db.query<ImageRow, []>("SELECT seq, id, pod, created_at, parent, logical_bytes FROM images ORDER BY created_at, seq").all();
    const referenced = new Map(
      db
        .query<{ image: number; bytes: number }, []>(
          "SELECT ic.image AS image, SUM(c.length) AS bytes FROM image_chunks ic JOIN chunks c ON c.hash = ic.hash GROUP BY ic.image",
        )
        .all()
        .map((r) => [r.image, r.bytes]),
    );
    const unique = new Map(
      db
        .query<{ image: number; bytes: number }, []>(
          `SELECT ic.image AS image, SUM(c.length) AS bytes FROM image_chunks ic JOIN chunks c ON c.hash = ic.hash
           WHERE NOT EXISTS (SELECT 1 FROM image_chunks o WHERE o.hash = ic.hash AND o.image <> ic.image)
           GROUP BY ic.image`,
        )
        .all()
        .map((r) => [r.image, r.bytes]),
    );
    return rows.map((r) => ({
      id: r.id,
      pod: r.pod,
      createdAt: r.created_at,
      logicalBytes: r.logical_bytes,
      referencedBytes: referenced.get(r.seq) ?? 0,
      uniqueBytes: unique.get(r.seq) ?? 0,
      parent: r.parent,
    }));
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
    db.transaction(() => {
      const row = db.query<{ seq: number }, [string]>("SELECT seq FROM images WHERE id = ?").get(id);
      if (row === null) throw new NotFoundError(`Image "${id}" is not in the catalogue`);
      db.run("DELETE FROM image_chunks WHERE image = ?", [row.seq]);
      db.run("DELETE FROM images WHERE seq = ?", [row.seq]);
    })();
  }

  /** Every chunk hash some image references. */
  referencedHashes(): Hash[] {
    return this.store.db
      .query<{ hash: Uint8Array }, []>("SELECT DISTINCT hash FROM image_chunks")
      .all()
      .map((r) => r.hash);
  }

  /** Remove chunks no image references (open writers' pins are kept). */
  gc(options: Omit<GcOptions, "liveQuery"> = {}): GcResult {
    return this.store.gc([], { ...options, liveQuery: "SELECT hash FROM image_chunks" });
  }
}
