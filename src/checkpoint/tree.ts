/**
 * A directory tree <-> manifest entries over stored chunks. captureTree walks
 * without following symlinks and stores each file's chunks; materializeTree
 * rebuilds the tree exactly (content, mode, owner, mtime, links), verifying
 * every chunk, in a fresh directory that is renamed into place only when whole.
 * materializeTreeAsync may link page images the store adopted whole instead of
 * copying them; it reads those back and checks every chunk too, at once or,
 * with deferLinkedChecks, after it returns (restore: while CRIU restores).
 *
 * Both directions stay in one file (about 600 lines): they are one format
 * (entry types, hard links, overlay whiteouts and xattrs, chunk sizes), and a
 * change to one must be read beside the other.
 */
import fs from "node:fs";
import { lgetxattr, lsetxattr, mkfifo, mknodWhiteout, OVERLAY_OPAQUE } from "../platform/linux/libc.ts";
import path from "node:path";
import { AlreadyExistsError, InvalidArgumentError } from "../errors.ts";
import type { ChunkLocation, ChunkWriter } from "../store/chunk-store.ts";
import { ChunkWorkers, type CopyRun, type FileHashes } from "../store/chunk-workers.ts";
import { CorruptChunkError, MissingChunkError } from "../store/errors.ts";
import { HASH_BYTES, type Hash, ZERO_HASH, isAllZero, isZeroHash, sha256, toHex } from "../image/hash.ts";
import { type FileEntry, PAGE_SIZE, checkEntries, chunkCount, chunkHash, chunkLength } from "../image/manifest.ts";

/**
 * Chunk size of files other than CRIU page images. bench/store.ts compares
 * 4 KiB and 64 KiB: 64 KiB stores and hashes faster and keeps manifests and
 * the index 16x smaller, while pages-*.img (the bulk of an image, and what
 * changes page by page) keeps 4 KiB chunks.
 */
export const FILE_CHUNK_SIZE = 64 << 10;

/** CRIU page images are dense arrays of pages: chunk them by page. */
export function defaultChunkSize(relPath: string): number {
  return /^pages-\d+\.img$/.test(path.posix.basename(relPath)) ? PAGE_SIZE : FILE_CHUNK_SIZE;
}

/** Where chunks come from when materializing: the store, a writer, or anything that verifies. */
export interface ChunkSource {
  /** The chunk's bytes, verified against the hash (throws otherwise). */
  get(hash: Hash): Uint8Array;
}

/** A source that can say where chunks are, so big files are copied (and verified) in bulk, on every core: the ChunkStore. */
export interface BulkChunkSource extends ChunkSource {
  locate(hashes: Uint8Array): Array<ChunkLocation | null>;
  packFile(pack: number): string;
  /** A raw pack that is exactly a file with this chunk list and size (adopted whole), or null. */
  rawPackFor(chunkList: Uint8Array, size: number): string | null;
}

function isBulk(s: ChunkSource): s is BulkChunkSource {
  const b = s as Partial<BulkChunkSource>;
  return typeof b.locate === "function" && typeof b.packFile === "function" && typeof b.rawPackFor === "function";
}

/** Files at least this big are hashed, copied and verified by the worker threads. */
export const BULK_FILE_BYTES = 4 << 20;

export interface CaptureOptions {
  /** Chunk size for a file (a power of two, at least 4 KiB). Default: defaultChunkSize. */
  chunkSizeFor?: (relPath: string) => number;
  /** Files read at once. Default 4. */
  concurrency?: number;
  /** Leave out a path (relative, "/"-separated); a directory left out takes its contents with it. */
  isExcluded?: (relPath: string) => boolean;
  /** Threads that hash big files (BULK_FILE_BYTES and up). Default ChunkWorkers.shared(); null hashes them inline. */
  workers?: ChunkWorkers | null;
  /** Hashing already under way, by relative path (page images hashed while CRIU wrote them: see PageTail). */
  hashing?: ReadonlyMap<string, Promise<FileHashes>>;
  /**
   * Let the store adopt a big file whose chunks are mostly new as a pack of
   * its own (hard link, no copy). The file must then never change: use it for
   * CRIU's image files, not for a pod's live files. Default false.
   */
  adopt?: boolean;
  /**
   * The entries of the same tree in the image this capture follows. A chunk of
   * a big file equal to the one at the same place in the same file there is
   * known to be stored, without asking the store, as long as `isStored()` (that
   * image is still in the catalogue) when the file is stored.
   */
  previous?: { entries: readonly FileEntry[]; isStored: () => boolean };
  /**
   * An earlier capture of this tree: when nothing in it has changed (every
   * path, type, mode, owner, size, mtime, ctime and inode the same: see
   * CaptureResult.fingerprint) and the store still has every chunk it names,
   * its entries are the result, and no file is read. For a pod's base, which
   * nothing writes: re-reading and hashing a whole root file system for every
   * checkpoint is most of the work otherwise.
   */
  unchanged?: { fingerprint: string; entries: readonly FileEntry[] };
}

export interface CaptureResult {
  /** Sorted by path; "." is the root itself. */
  entries: FileEntry[];
  /** Sockets, devices and FIFOs are not captured. */
  skipped: Array<{ path: string; reason: string }>;
  logicalBytes: number;
  zeroChunks: number;
  chunks: number;
  /** SHA-256 over every path and its lstat (type, mode, owner, size, mtime, ctime, inode): the tree unchanged has the same. */
  fingerprint: string;
  /** The result is `unchanged.entries` (nothing was read). */
  isReused: boolean;
}

const READ_BYTES = 4 << 20;

/** Walk `dir` (not following symlinks), store every file's chunks through `writer`, return the entries. */
export async function captureTree(dir: string, writer: ChunkWriter, options: CaptureOptions = {}): Promise<CaptureResult> {
  const chunkSizeFor = options.chunkSizeFor ?? defaultChunkSize;
  const rootStat = fs.lstatSync(dir);
  if (!rootStat.isDirectory()) throw new InvalidArgumentError(`Cannot capture "${dir}": it is not a directory`);
  const found: Array<{ rel: string; st: fs.Stats }> = [{ rel: ".", st: rootStat }];
  const skipped: CaptureResult["skipped"] = [];
  const walk = (abs: string, rel: string) => {
    for (const name of fs.readdirSync(abs).sort()) {
      const childRel = rel === "." ? name : `${rel}/${name}`;
      if (options.isExcluded?.(childRel)) continue;
      const childAbs = path.join(abs, name);
      const st = fs.lstatSync(childAbs);
      if (st.isDirectory()) {
        found.push({ rel: childRel, st });
        walk(childAbs, childRel);
      } else if (st.isFile() || st.isSymbolicLink() || st.isFIFO() || (st.isCharacterDevice() && st.rdev === 0)) {
        // 0:0 character devices are overlayfs whiteouts: a deletion in the pod's layer.
        found.push({ rel: childRel, st });
      } else {
        skipped.push({ path: childRel, reason: st.isSocket() ? "socket" : st.isFIFO() ? "fifo" : "device" });
      }
    }
  };
  walk(dir, ".");
  found.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
  const fingerprint = fingerprintOf(found);
  const reused = options.unchanged?.fingerprint === fingerprint ? reuse(options.unchanged.entries, writer) : null;
  if (reused !== null) return { ...reused, skipped, fingerprint, isReused: true };

  const entries: FileEntry[] = [];
  const firstLink = new Map<string, string>();
  const work: Array<{ entry: FileEntry; abs: string }> = [];
  let logical = 0;
  for (const { rel, st } of found) {
    const base = { path: rel, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtimeMs: st.mtimeMs, size: 0, chunkSize: 0, chunks: new Uint8Array(0) };
    if (st.isDirectory()) {
      const isOpaque = lgetxattr(path.join(dir, rel), OVERLAY_OPAQUE) === "y";
      entries.push(isOpaque ? { ...base, type: "dir", opaque: true } : { ...base, type: "dir" });
    } else if (st.isFIFO()) entries.push({ ...base, type: "fifo" });
    else if (st.isCharacterDevice()) entries.push({ ...base, type: "whiteout" });
    else if (st.isSymbolicLink()) entries.push({ ...base, type: "symlink", target: fs.readlinkSync(path.join(dir, rel)) });
    else {
      const key = `${st.dev}:${st.ino}`;
      const first = st.nlink > 1 ? firstLink.get(key) : undefined;
      if (first !== undefined) {
        entries.push({ ...base, type: "hardlink", target: first });
        continue;
      }
      if (st.nlink > 1) firstLink.set(key, rel);
      const chunkSize = chunkSizeFor(rel);
      const entry: FileEntry = { ...base, type: "file", size: st.size, chunkSize, chunks: new Uint8Array(Math.ceil(st.size / chunkSize) * HASH_BYTES) };
      entries.push(entry);
      work.push({ entry, abs: path.join(dir, rel) });
      logical += st.size;
    }
  }

  let zeroChunks = 0;
  let chunks = 0;
  const workers = options.workers === undefined ? ChunkWorkers.shared() : options.workers;
  const previous = new Map((options.previous?.entries ?? []).filter((e) => e.type === "file").map((e) => [e.path, e]));
  const captureBig = async (entry: FileEntry, abs: string, hashing: Promise<FileHashes>) => {
    const fh = await hashing;
    if (fh.size !== entry.size || fh.chunkSize !== entry.chunkSize) {
      throw new InvalidArgumentError(`Cannot capture "${abs}": it changed while it was read (${entry.size} bytes, then ${fh.size})`);
    }
    // From here to putHashedFile, no await: what the previous image vouches for stays true.
    const prev = previous.get(entry.path);
    let known: Uint8Array | undefined;
    if (prev && prev.chunkSize === fh.chunkSize && options.previous!.isStored()) {
      const n = Math.min(fh.zero.length, chunkCount(prev));
      known = new Uint8Array(fh.zero.length);
      for (let i = 0; i < n; i++) {
        // The last chunk of the old file may have been shorter: same hash, same bytes, so it is still a match.
        if (
          fh.zero[i] === 0 &&
          Buffer.compare(fh.hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES), prev.chunks.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES)) === 0
        )
          known[i] = 1;
      }
      writer.trustStored(fh.hashes, known);
    }
    writer.putHashedFile(abs, fh, { known, adopt: options.adopt ?? false });
    entry.chunks = fh.hashes;
    for (const z of fh.zero) zeroChunks += z;
    chunks += fh.zero.length;
  };
  const captureFile = async ({ entry, abs }: { entry: FileEntry; abs: string }) => {
    // A big CRIU file with no previous version will most likely be adopted: start writing it to disk now,
    // on a thread of its own, so the commit's fsync finds little left to do. (Not earlier: an fsync forces
    // a journal commit that would hold up the files of a pod still frozen.)
    if (workers && options.adopt && entry.size >= BULK_FILE_BYTES && !previous.has(entry.path)) void workers.syncFile(abs).catch(() => undefined);
    const hashing = options.hashing?.get(entry.path);
    if (hashing) return captureBig(entry, abs, hashing);
    // Files of a pod's layer or volumes go the plain way: each chunk hashed as it is stored.
    if (workers && options.adopt && entry.size >= BULK_FILE_BYTES) return captureBig(entry, abs, workers.hashFile(abs, entry.chunkSize));
    const fh = await fs.promises.open(abs, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    try {
      const cs = entry.chunkSize;
      const block = new Uint8Array(Math.min(Math.max(cs, Math.floor(READ_BYTES / cs) * cs), Math.ceil(entry.size / cs) * cs));
      let pos = 0;
      let index = 0;
      while (pos < entry.size) {
        const want = Math.min(block.byteLength, entry.size - pos);
        let got = 0;
        while (got < want) {
          const { bytesRead } = await fh.read(block, got, want - got, pos + got);
          if (bytesRead === 0) throw new InvalidArgumentError(`Cannot capture "${abs}": it shrank while it was read`);
          got += bytesRead;
        }
        for (let off = 0; off < got; off += cs, index++) {
          const piece = block.subarray(off, Math.min(got, off + cs));
          const h = isAllZero(piece) ? ZERO_HASH : writer.put(piece);
          if (h === ZERO_HASH) zeroChunks++;
          entry.chunks.set(h, index * HASH_BYTES);
          chunks++;
        }
        pos += got;
      }
    } finally {
      await fh.close();
    }
  };
  await pool(work, options.concurrency ?? 4, captureFile);
  return { entries, skipped, logicalBytes: logical, zeroChunks, chunks, fingerprint, isReused: false };
}

function fingerprintOf(found: ReadonlyArray<{ rel: string; st: fs.Stats }>): string {
  const h = new Bun.CryptoHasher("sha256");
  for (const { rel, st } of found) h.update(`${rel}\0${st.mode}\0${st.uid}\0${st.gid}\0${st.size}\0${st.mtimeMs}\0${st.ctimeMs}\0${st.ino}\0${st.nlink}\n`);
  return h.digest("hex");
}

/** Earlier entries, if the store still has every chunk they name (now pinned for the writer); else null. */
function reuse(entries: readonly FileEntry[], writer: ChunkWriter): Omit<CaptureResult, "skipped" | "fingerprint" | "isReused"> | null {
  const hashes: Uint8Array[] = [];
  let logical = 0;
  let zeroChunks = 0;
  for (const e of entries) {
    if (e.type !== "file") continue;
    logical += e.size;
    for (let i = 0; i < e.chunks.byteLength; i += HASH_BYTES) {
      const h = e.chunks.subarray(i, i + HASH_BYTES);
      if (isZeroHash(h)) zeroChunks++;
      else hashes.push(h);
    }
  }
  if (writer.missing(hashes).length > 0) return null;
  return { entries: [...entries], logicalBytes: logical, zeroChunks, chunks: hashes.length + zeroChunks };
}

export interface MaterializeOptions {
  /** Set owners (uid, gid). Default: when running as root. */
  shouldPreserveOwner?: boolean;
  /** fsync every file and directory before the final rename. Default false. */
  isDurable?: boolean;
  /** materializeTreeAsync: threads that copy and verify big files. Default ChunkWorkers.shared(). */
  workers?: ChunkWorkers;
  /**
   * materializeTreeAsync: check hard-linked files (adopted page images) after
   * returning, while the caller goes on: `verified` in the result settles when
   * they are read back. Nothing may use their contents before it resolves.
   */
  deferLinkedChecks?: boolean;
  /**
   * Checks of raw packs already under way (startRawPackChecks), by pack path:
   * a file linked to one of them waits for that check instead of reading it again.
   */
  rawPackChecks?: ReadonlyMap<string, Promise<void>>;
  /**
   * materializeTreeAsync: big files made earlier from another image of the same paths (a migration's
   * last pre-copy round, staged before the freeze), by path. Such a file is taken over (renamed) and
   * only the chunks that differ are written, each checked as it is (copyVerified). It is not read back
   * whole: every other chunk of it was checked the same way when it was staged, and it never left
   * the agent's own directory (nlink 1, never a store's pack); reading 1 GiB back inside a freeze,
   * beside CRIU's restore on the same cores, cost more than the restore itself.
   */
  staged?: ReadonlyMap<string, StagedFile>;
  /** materializeTreeAsync: copy every big file, never link one to the store (a file to be staged, and patched later). */
  isPrivateCopy?: boolean;
}

/** A file made from `entry` at `path`, which a later materialize may take over. */
export interface StagedFile {
  path: string;
  entry: FileEntry;
}

/** The raw pack a big file of `entries` would be hard-linked to by materializeTreeAsync, or null when it would be copied. */
export function rawPackOf(e: FileEntry, source: ChunkSource): string | null {
  if (!isBulk(source) || e.type !== "file" || e.size < BULK_FILE_BYTES) return null;
  // The link shares the pack's inode: only for root's files that nobody else may write (CRIU's
  // images are root's, 0644), and the pack directory is root's alone.
  const isRootOnly = e.uid === 0 && e.gid === 0 && (e.mode & 0o7022) === 0;
  return isRootOnly ? source.rawPackFor(e.chunks, e.size) : null;
}

/**
 * Start checking, at once, every chunk of the raw packs that materializeTreeAsync
 * will link files of `entries` to (a restore's page images), so the reading and
 * hashing overlap everything before and during CRIU's restore. By pack path;
 * each promise rejects with the first CorruptChunkError (and is also caught, so
 * one nobody awaits is no unhandled rejection).
 */
export function startRawPackChecks(entries: readonly FileEntry[], source: ChunkSource, workers = ChunkWorkers.shared()): RawPackChecks {
  const checks = new Map<string, Promise<void>>();
  const joins: Array<() => void> = [];
  for (const e of entries) {
    const raw = rawPackOf(e, source);
    if (raw === null || checks.has(raw)) continue;
    // All threads but one, so CRIU, restoring from the same file meanwhile, keeps a core (as a dump's hashing does).
    const h = workers.hashFileThenAll(raw, e.chunkSize, Math.max(1, workers.threads - 1));
    const check = h.result.then((fh) => checkHashes(e, fh));
    check.catch(() => undefined);
    checks.set(raw, check);
    joins.push(h.useAllThreads);
  }
  return Object.assign(checks, {
    useAllThreads: () => {
      for (const j of joins) j();
    },
  });
}

/** The checks startRawPackChecks started, by pack path. */
export interface RawPackChecks extends ReadonlyMap<string, Promise<void>> {
  /** CRIU is done with the core it was left: the checks still going take every thread. */
  useAllThreads(): void;
}

export interface MaterializeResult {
  files: number;
  bytes: number;
  /** Resolves when every chunk has been checked (at once, unless deferLinkedChecks); rejects with the first CorruptChunkError. */
  verified?: Promise<void>;
}

/**
 * Recreate `entries` at `destDir` (which must not exist), reading and
 * verifying every chunk from `source`. Builds in a sibling temp directory and
 * renames it into place, so a failure leaves nothing behind. Errors name the
 * file and, for chunks, the hash.
 */
export function materializeTree(entries: readonly FileEntry[], source: ChunkSource, destDir: string, options: MaterializeOptions = {}): MaterializeResult {
  checkEntries(entries as FileEntry[], "tree");
  const shouldChown = options.shouldPreserveOwner ?? process.getuid?.() === 0;
  const dest = path.resolve(destDir);
  if (fs.existsSync(dest) || isDanglingLink(dest)) throw new AlreadyExistsError(`Cannot materialize into "${dest}": it already exists`);
  const tmp = fs.mkdtempSync(`${dest}.partial-`);
  try {
    const result = build(entries, source, tmp, shouldChown, options.isDurable ?? false);
    fs.renameSync(tmp, dest);
    if (options.isDurable) fsyncPath(path.dirname(dest));
    return result;
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/**
 * materializeTree, with big files (BULK_FILE_BYTES and up) made on every core
 * when the source is the store: copied from the packs in runs, each chunk
 * checked against its hash (and each record against the index) before its
 * run is written. A file the store adopted whole as a raw pack (a CRIU page
 * image) is hard-linked instead of copied when it is root's and only root may
 * write it, then read back and every chunk checked all the same.
 */
export async function materializeTreeAsync(
  entries: readonly FileEntry[],
  source: ChunkSource,
  destDir: string,
  options: MaterializeOptions = {},
): Promise<MaterializeResult & { verified: Promise<void> }> {
  checkEntries(entries as FileEntry[], "tree");
  const shouldChown = options.shouldPreserveOwner ?? process.getuid?.() === 0;
  const isDurable = options.isDurable ?? false;
  const dest = path.resolve(destDir);
  if (fs.existsSync(dest) || isDanglingLink(dest)) throw new AlreadyExistsError(`Cannot materialize into "${dest}": it already exists`);
  const tmp = fs.mkdtempSync(`${dest}.partial-`);
  try {
    const done = new Set<string>();
    const workers = options.workers ?? ChunkWorkers.shared();
    const linked: FileEntry[] = [];
    const earlyChecks: Promise<void>[] = [];
    if (isBulk(source)) {
      const big = entries.filter((e) => e.type === "file" && e.size >= BULK_FILE_BYTES);
      for (const e of big) {
        const p = path.join(tmp, e.path);
        fs.mkdirSync(path.dirname(p), { recursive: true, mode: 0o700 });
        const old = takeStaged(options.staged?.get(e.path), e, p);
        const linkedTo = await writeBulkFile(e, source, p, shouldChown, isDurable, workers, old, options.isPrivateCopy === true);
        const early = linkedTo === null ? undefined : options.rawPackChecks?.get(linkedTo);
        if (early) earlyChecks.push(early);
        else if (linkedTo !== null && !options.deferLinkedChecks) await checkFile(e, p, workers);
        else if (linkedTo !== null && options.deferLinkedChecks) linked.push(e);
        done.add(e.path);
      }
    }
    const result = build(entries, source, tmp, shouldChown, isDurable, done);
    fs.renameSync(tmp, dest);
    if (isDurable) fsyncPath(path.dirname(dest));
    const verified = Promise.all([...earlyChecks, ...linked.map((e) => checkFile(e, path.join(dest, e.path), workers))]).then(() => undefined);
    verified.catch(() => undefined); // the caller awaits it; nothing is left unhandled if it does not get that far
    return { ...result, verified };
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/**
 * materializeTree without holding the event loop: between files it lets others run at least every
 * YIELD_EVERY_MS (a migration's destination makes a pod's base this way while it also receives the
 * next pre-copy round and answers the source's health checks).
 */
export async function materializeTreeYielding(entries: readonly FileEntry[], source: ChunkSource, destDir: string): Promise<MaterializeResult> {
  checkEntries(entries as FileEntry[], "tree");
  const shouldChown = process.getuid?.() === 0;
  const dest = path.resolve(destDir);
  if (fs.existsSync(dest) || isDanglingLink(dest)) throw new AlreadyExistsError(`Cannot materialize into "${dest}": it already exists`);
  const tmp = fs.mkdtempSync(`${dest}.partial-`);
  try {
    const steps = buildSteps(entries, source, tmp, shouldChown, false);
    let since = performance.now();
    for (;;) {
      const r = steps.next();
      if (r.done) {
        fs.renameSync(tmp, dest);
        return r.value;
      }
      if (performance.now() - since >= YIELD_EVERY_MS) {
        await Bun.sleep(0);
        since = performance.now();
      }
    }
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** materializeTreeYielding holds the event loop at most about this long at a time. */
export const YIELD_EVERY_MS = 20;

/** Every chunk of a file read back from disk against the manifest. */
async function checkFile(e: FileEntry, p: string, workers: ChunkWorkers, threads?: number): Promise<void> {
  checkHashes(e, await workers.hashFile(p, e.chunkSize, threads));
}

/** The staged file moved to `p` when it can be patched into `e` (same chunk size), and the entry it was made from; else null. */
function takeStaged(s: StagedFile | undefined, e: FileEntry, p: string): FileEntry | null {
  if (!s || s.entry.chunkSize !== e.chunkSize || s.entry.type !== "file") return null;
  try {
    // Never a store's pack (a link would be patched with it).
    const st = fs.lstatSync(s.path);
    if (!st.isFile() || st.nlink !== 1) return null;
    fs.renameSync(s.path, p);
    return s.entry;
  } catch {
    return null;
  }
}

/**
 * Make one big file: copied and checked (null), or linked to a raw pack (that pack's path, still to
 * check), or patched from `old` (a staged file already at `p`, made from that entry: only the chunks
 * that differ are written, and checked as they are; null).
 */
async function writeBulkFile(
  e: FileEntry,
  source: BulkChunkSource,
  p: string,
  shouldChown: boolean,
  isDurable: boolean,
  workers: ChunkWorkers,
  old: FileEntry | null = null,
  isPrivateCopy = false,
): Promise<string | null> {
  const raw = old === null && !isPrivateCopy ? rawPackOf(e, source) : null;
  if (raw !== null && linkIfThere(raw, p)) {
    const fd = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    try {
      if (shouldChown) fs.fchownSync(fd, e.uid, e.gid);
      fs.fchmodSync(fd, e.mode);
      fs.futimesSync(fd, e.mtimeMs / 1000, e.mtimeMs / 1000);
    } finally {
      fs.closeSync(fd);
    }
    return raw;
  }
  const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = fs.constants;
  const fd = old ? fs.openSync(p, O_WRONLY | O_NOFOLLOW) : fs.openSync(p, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
  try {
    fs.ftruncateSync(fd, e.size); // zero chunks stay holes
    const oldCount = old ? chunkCount(old) : 0;
    // Patching: a chunk the old file has at the same place is there already; only a zero chunk over data needs writing.
    const isThere = (i: number, h: Hash) => i < oldCount && chunkLength(old!, i) === chunkLength(e, i) && Buffer.compare(chunkHash(old!, i), h) === 0;
    const locations = source.locate(e.chunks);
    const packs: string[] = [];
    const packIndex = new Map<number, number>();
    const runs: CopyRun[] = [];
    const n = chunkCount(e);
    for (let i = 0; i < n; i++) {
      const h = chunkHash(e, i);
      if (old && isThere(i, h)) continue;
      if (isZeroHash(h)) {
        if (i < oldCount) fs.writeSync(fd, new Uint8Array(chunkLength(e, i)), 0, chunkLength(e, i), i * e.chunkSize);
        continue;
      }
      const loc = locations[i];
      if (!loc) throw new MissingChunkError(toHex(h), { path: e.path });
      const len = chunkLength(e, i);
      if (loc.length !== len) throw new CorruptChunkError(toHex(h), `it is ${loc.length} bytes where the manifest says ${len}`, { path: e.path });
      let pi = packIndex.get(loc.pack);
      if (pi === undefined) {
        pi = packs.push(source.packFile(loc.pack)) - 1;
        packIndex.set(loc.pack, pi);
      }
      const last = runs[runs.length - 1];
      const stride = loc.headerBytes + len;
      if (
        last !== undefined &&
        last.pack === pi &&
        last.first + last.count === i &&
        last.headerBytes === loc.headerBytes &&
        last.length === len &&
        last.offset + last.count * stride === loc.offset &&
        (last.count + 1) * stride <= BULK_RUN_BYTES
      ) {
        last.count++;
      } else {
        runs.push({ pack: pi, offset: loc.offset, headerBytes: loc.headerBytes, length: len, count: 1, first: i });
      }
    }
    try {
      await workers.copyVerified(p, e.chunkSize, e.chunks, packs, runs);
    } catch (err) {
      if (err instanceof CorruptChunkError) throw err.inFile(e.path);
      throw err;
    }
    if (shouldChown) fs.fchownSync(fd, e.uid, e.gid);
    fs.fchmodSync(fd, e.mode);
    fs.futimesSync(fd, e.mtimeMs / 1000, e.mtimeMs / 1000);
    if (isDurable) fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return null;
}

/** A bulk copy run reads at most this much at once. */
const BULK_RUN_BYTES = 4 << 20;

function linkIfThere(from: string, to: string): boolean {
  try {
    fs.linkSync(from, to);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "EXDEV" || code === "EMLINK") return false; // compacted meanwhile, or another file system
    throw e;
  }
}

/** Every chunk of a file read back (fh) against the manifest's hashes; throws naming the first that differs. */
export function checkHashes(e: FileEntry, fh: FileHashes): void {
  if (fh.size !== e.size)
    throw new CorruptChunkError(toHex(chunkHash(e, 0)), `the file is ${fh.size} bytes where the manifest says ${e.size}`, { path: e.path });
  if (Buffer.compare(fh.hashes, e.chunks) === 0) return;
  const n = chunkCount(e);
  for (let i = 0; i < n; i++) {
    const want = chunkHash(e, i);
    const got = fh.hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES);
    if (Buffer.compare(got, want) === 0) continue;
    // A chunk of zeros is reported as the zero marker; a manifest may still name it by its real hash.
    if (fh.zero[i] === 1 && Buffer.compare(sha256(new Uint8Array(chunkLength(e, i))), want) === 0) continue;
    throw new CorruptChunkError(toHex(want), "its bytes no longer match its hash", { path: e.path });
  }
}

function build(
  entries: readonly FileEntry[],
  source: ChunkSource,
  root: string,
  shouldChown: boolean,
  isDurable: boolean,
  done?: ReadonlySet<string>,
): MaterializeResult {
  const steps = buildSteps(entries, source, root, shouldChown, isDurable, done);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/** build, as steps: it yields after each file written, so an async caller can let others run between them. */
function* buildSteps(
  entries: readonly FileEntry[],
  source: ChunkSource,
  root: string,
  shouldChown: boolean,
  isDurable: boolean,
  done?: ReadonlySet<string>,
): Generator<void, MaterializeResult, void> {
  const sorted = [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const at = (p: string) => (p === "." ? root : path.join(root, p));
  // Paths were checked (relative, no "..", none under a non-directory), no
  // link exists until the very end, and files are opened O_EXCL|O_NOFOLLOW:
  // nothing written here can land outside `root`.
  for (const e of sorted) {
    if (e.type === "dir" && e.path !== ".") fs.mkdirSync(at(e.path), { recursive: true, mode: 0o700 });
  }
  let files = 0;
  let bytes = 0;
  for (const e of sorted) {
    if (e.type !== "file") continue;
    if (!done?.has(e.path)) {
      fs.mkdirSync(path.dirname(at(e.path)), { recursive: true, mode: 0o755 });
      writeFile(e, source, at(e.path), shouldChown, isDurable);
      yield;
    }
    files++;
    bytes += e.size;
  }
  for (const e of sorted) {
    if (e.type !== "whiteout" && e.type !== "fifo") continue;
    fs.mkdirSync(path.dirname(at(e.path)), { recursive: true, mode: 0o755 });
    const p = at(e.path);
    if (e.type === "whiteout") mknodWhiteout(p, e.mode);
    else mkfifo(p, e.mode);
    if (shouldChown) fs.lchownSync(p, e.uid, e.gid);
    fs.chmodSync(p, e.mode);
    fs.utimesSync(p, e.mtimeMs / 1000, e.mtimeMs / 1000);
  }
  for (const e of sorted) {
    if (e.type !== "hardlink") continue;
    fs.mkdirSync(path.dirname(at(e.path)), { recursive: true, mode: 0o755 });
    fs.linkSync(at(e.target!), at(e.path));
  }
  for (const e of sorted) {
    if (e.type !== "symlink") continue;
    fs.mkdirSync(path.dirname(at(e.path)), { recursive: true, mode: 0o755 });
    const p = at(e.path);
    fs.symlinkSync(e.target!, p);
    if (shouldChown) fs.lchownSync(p, e.uid, e.gid);
    fs.lutimesSync(p, e.mtimeMs / 1000, e.mtimeMs / 1000);
  }
  if (!sorted.some((e) => e.path === ".")) fs.chmodSync(root, 0o755);
  // Directories last, deepest first: creating their contents changed their mtimes.
  for (const e of [...sorted].reverse()) {
    if (e.type !== "dir") continue;
    const p = at(e.path);
    if (shouldChown) fs.lchownSync(p, e.uid, e.gid);
    fs.chmodSync(p, e.mode);
    if (e.opaque) lsetxattr(p, OVERLAY_OPAQUE, "y");
    fs.utimesSync(p, e.mtimeMs / 1000, e.mtimeMs / 1000);
    if (isDurable) fsyncPath(p);
  }
  return { files, bytes };
}

const WRITE_BYTES = 4 << 20;

function writeFile(e: FileEntry, source: ChunkSource, p: string, shouldChown: boolean, isDurable: boolean): void {
  const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = fs.constants;
  const fd = fs.openSync(p, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
  try {
    const n = chunkCount(e);
    let run: Uint8Array[] = [];
    let runStart = 0;
    let runBytes = 0;
    const flushRun = () => {
      if (runBytes === 0) return;
      const buf = run.length === 1 ? run[0]! : Buffer.concat(run, runBytes);
      let done = 0;
      while (done < buf.byteLength) done += fs.writeSync(fd, buf, done, buf.byteLength - done, runStart + done);
      run = [];
      runBytes = 0;
    };
    for (let i = 0; i < n; i++) {
      const h = chunkHash(e, i);
      const offset = i * e.chunkSize;
      if (isZeroHash(h)) {
        flushRun(); // leave a hole: the final ftruncate makes it zeros
        continue;
      }
      const len = chunkLength(e, i);
      let data: Uint8Array;
      try {
        data = source.get(h);
      } catch (err) {
        if (err instanceof CorruptChunkError) throw err.inFile(e.path);
        if (err instanceof MissingChunkError) throw new MissingChunkError(err.hash, { path: e.path, cause: err });
        throw err;
      }
      if (data.byteLength !== len) {
        throw new CorruptChunkError(toHex(h), `it is ${data.byteLength} bytes where the manifest says ${len}`, { path: e.path });
      }
      if (runBytes === 0) runStart = offset;
      run.push(data);
      runBytes += len;
      if (runBytes >= WRITE_BYTES) flushRun();
    }
    flushRun();
    fs.ftruncateSync(fd, e.size);
    if (shouldChown) fs.fchownSync(fd, e.uid, e.gid);
    fs.fchmodSync(fd, e.mode); // after chown, which clears set-id bits
    fs.futimesSync(fd, e.mtimeMs / 1000, e.mtimeMs / 1000);
    if (isDurable) fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function isDanglingLink(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

function fsyncPath(p: string): void {
  const fd = fs.openSync(p, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Run `fn` over `items` with at most `limit` at once. */
async function pool<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const runners = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  });
  await Promise.all(runners);
}
