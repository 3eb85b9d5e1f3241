/**
 * The store's index database: chunks (hash -> pack, offset, length), packs,
 * and the pending index's tables (see pending-index.ts).
 *
 * Raw packs (adopted files, see rawPackPath) are flagged in packs.raw, with the
 * SHA-256 of the adopted file's chunk list in packs.digest. There is no index
 * of chunks by pack: it doubled the cost of every insert (262,144 per GiB of
 * pages), and only gc, which scans anyway, needs it.
 */
import type { Database } from "bun:sqlite";

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

/** Create the tables, or bring an older store's up to date. */
export function createSchema(db: Database): void {
  db.exec(SCHEMA);
  migrate(db);
}
