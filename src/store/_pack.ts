/**
 * Pack files: append-only runs of chunk records. A pack starts with a 16-byte
 * header ("APODPACK", u32 LE version, u32 reserved) and holds records of
 * [32-byte SHA-256][u32 LE length][bytes]. A record carries its own hash so a
 * pack can be checked (and an index rebuilt) without the index.
 *
 * Only the bytes below a pack's committed size (kept in the index database)
 * are referenced; anything past it is the tail of an interrupted write and is
 * truncated when the store opens.
 */
import fs from "node:fs";
import path from "node:path";

export const PACK_MAGIC = "APODPACK";
export const PACK_VERSION = 1;
export const PACK_HEADER_BYTES = 16;
export const RECORD_HEADER_BYTES = 36;

export function packHeader(): Uint8Array {
  const h = new Uint8Array(PACK_HEADER_BYTES);
  h.set(new TextEncoder().encode(PACK_MAGIC), 0);
  new DataView(h.buffer).setUint32(8, PACK_VERSION, true);
  return h;
}

export function packPath(dir: string, id: number): string {
  return path.join(dir, `${String(id).padStart(8, "0")}.pack`);
}

/**
 * A raw pack: a file of chunk data only, no header and no record headers,
 * adopted as it is (a CRIU pages-*.img is a dense array of 4 KiB pages). The
 * index says where each chunk is; its hash is checked on every read all the
 * same. Bytes no index entry points at (duplicates, zero pages) are garbage
 * that gc compaction reclaims.
 */
export function rawPackPath(dir: string, id: number): string {
  return path.join(dir, `${String(id).padStart(8, "0")}.pages`);
}

/** Where a record sits: its pack, the offset of its header, its data length. */
export interface RecordLocation {
  pack: number;
  offset: number;
  length: number;
}

/** One pack being appended to by one writer. */
export interface OpenPack {
  id: number;
  fd: number;
  /** Bytes on disk (written with write(2), not necessarily synced). */
  flushed: number;
  /** Bytes in the index's committed size. */
  committed: number;
  /** The directory entry has been fsynced. */
  isLinked: boolean;
  /** An adopted raw pack (rawPackPath): read-only, never appended to. */
  isRaw?: boolean;
  /** For a raw pack: SHA-256 of the chunk list of the file it was, so a restore can find it whole. */
  digest?: Uint8Array;
  /** For a raw pack: the size of its chunks (they sit at multiples of it). */
  chunkSize?: number;
  /** The digest is in the index. */
  isDigestCommitted?: boolean;
  /** A raw pack being filled in place (PackAppender.createRaw) has bytes written since its last fsync. */
  isDirty?: boolean;
}

const BUFFER_BYTES = 4 << 20;

/**
 * Appends records to a writer's own packs, rolling to a new pack past
 * `maxPackBytes`. `newPack` registers a pack (size 0) in the index and returns
 * its id; the appender creates the file.
 */
export class PackAppender {
  /** Packs appended to, the current one last. */
  readonly packs: OpenPack[] = [];
  /** Files adopted whole as raw packs. */
  readonly adopted: OpenPack[] = [];
  /** Raw packs made empty and filled in place (files received chunk by chunk). */
  readonly filled: OpenPack[] = [];
  #buf = new Uint8Array(BUFFER_BYTES);
  #used = 0;
  readonly #dir: string;
  readonly #maxPackBytes: number;
  readonly #newPack: () => number;

  constructor(dir: string, maxPackBytes: number, newPack: () => number) {
    this.#dir = dir;
    this.#maxPackBytes = maxPackBytes;
    this.#newPack = newPack;
  }

  get current(): OpenPack | undefined {
    return this.packs[this.packs.length - 1];
  }

  /** Append one record; returns where it will be once flushed. */
  append(hash: Uint8Array, bytes: Uint8Array): RecordLocation {
    const need = RECORD_HEADER_BYTES + bytes.byteLength;
    let pack = this.current;
    if (pack === undefined || (this.#end(pack) + need > this.#maxPackBytes && this.#end(pack) > PACK_HEADER_BYTES)) {
      this.flush();
      pack = this.#open();
    }
    const offset = this.#end(pack);
    if (this.#used + need > this.#buf.byteLength) {
      this.flush();
      if (need > this.#buf.byteLength) {
        const rec = new Uint8Array(need);
        writeRecordHeader(rec, 0, hash, bytes.byteLength);
        rec.set(bytes, RECORD_HEADER_BYTES);
        writeAll(pack.fd, rec, pack.flushed);
        pack.flushed += need;
        return { pack: pack.id, offset, length: bytes.byteLength };
      }
    }
    writeRecordHeader(this.#buf, this.#used, hash, bytes.byteLength);
    this.#buf.set(bytes, this.#used + RECORD_HEADER_BYTES);
    this.#used += need;
    return { pack: pack.id, offset, length: bytes.byteLength };
  }

  /** Write buffered records to the current pack (no fsync). */
  flush(): void {
    const pack = this.current;
    if (pack === undefined || this.#used === 0) return;
    writeAll(pack.fd, this.#buf.subarray(0, this.#used), pack.flushed);
    pack.flushed += this.#used;
    this.#used = 0;
  }

  /** Every pack of this appender: appended, adopted and filled. */
  get all(): OpenPack[] {
    return this.adopted.length === 0 && this.filled.length === 0 ? this.packs : [...this.packs, ...this.adopted, ...this.filled];
  }

  /**
   * A new raw pack of `size` bytes, all holes (zeros) until written: a file
   * that arrives chunk by chunk is written into it at its chunks' offsets.
   */
  createRaw(newRawPack: () => number, size: number, chunkSize: number): OpenPack {
    const id = newRawPack();
    const fd = fs.openSync(rawPackPath(this.#dir, id), "wx+", 0o600);
    fs.ftruncateSync(fd, size);
    const pack: OpenPack = { id, fd, flushed: size, committed: 0, isLinked: false, isRaw: true, chunkSize, isDirty: true };
    this.filled.push(pack);
    return pack;
  }

  /**
   * Take an existing file as a raw pack: hard-link it into the pack directory
   * under a new id (no bytes are copied). Returns null when it is on another
   * file system (the caller copies instead).
   */
  adopt(file: string, newRawPack: () => number, digest: Uint8Array, chunkSize: number): OpenPack | null {
    const id = newRawPack();
    const dest = rawPackPath(this.#dir, id);
    try {
      fs.linkSync(file, dest);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EXDEV") return null;
      throw e;
    }
    const fd = fs.openSync(dest, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    const size = fs.fstatSync(fd).size;
    const pack: OpenPack = { id, fd, flushed: size, committed: 0, isLinked: false, isRaw: true, digest, chunkSize };
    this.adopted.push(pack);
    return pack;
  }

  /** Flush and fsync every pack with bytes past its committed size (and, once, the directory entry of a new pack). */
  sync(durable: boolean): void {
    this.flush();
    if (!durable) return;
    let isDirDirty = false;
    for (const p of this.all) {
      if (p.flushed > p.committed || p.isDirty) fs.fdatasyncSync(p.fd);
      p.isDirty = false;
      if (!p.isLinked) isDirDirty = p.isLinked = true;
    }
    if (isDirDirty) {
      const fd = fs.openSync(this.#dir, "r");
      try {
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    }
  }

  /** Whether a record is still in the write buffer (read it after flush()). */
  isBuffered(loc: RecordLocation): boolean {
    const pack = this.current;
    return pack !== undefined && pack.id === loc.pack && loc.offset >= pack.flushed;
  }

  fdOf(packId: number): number | undefined {
    return this.all.find((p) => p.id === packId)?.fd;
  }

  closeFiles(): void {
    for (const p of this.all) {
      try {
        fs.closeSync(p.fd);
      } catch {
        // already closed
      }
    }
  }

  #end(pack: OpenPack): number {
    return pack.flushed + (pack === this.current ? this.#used : 0);
  }

  #open(): OpenPack {
    const id = this.#newPack();
    const fd = fs.openSync(packPath(this.#dir, id), "wx+", 0o600);
    writeAll(fd, packHeader(), 0);
    const pack: OpenPack = { id, fd, flushed: PACK_HEADER_BYTES, committed: 0, isLinked: false };
    this.packs.push(pack);
    return pack;
  }
}

export function writeRecordHeader(buf: Uint8Array, at: number, hash: Uint8Array, length: number): void {
  buf.set(hash, at);
  new DataView(buf.buffer, buf.byteOffset).setUint32(at + 32, length, true);
}

export function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0;
  while (done < bytes.byteLength) {
    done += fs.writeSync(fd, bytes, done, bytes.byteLength - done, position + done);
  }
}

/** Write `parts` one after another at `position` (one writev, no joined copy), all of them. */
export function writevAll(fd: number, parts: Uint8Array[], position: number): void {
  let total = 0;
  for (const p of parts) total += p.byteLength;
  let done = fs.writevSync(fd, parts, position);
  if (done === total) return;
  // A short write (rare: a signal, a full disk that then fails): the rest one part at a time.
  let at = 0;
  for (const p of parts) {
    const end = at + p.byteLength;
    if (end > done) {
      const from = Math.max(0, done - at);
      writeAll(fd, p.subarray(from), position + at + from);
      done = end;
    }
    at = end;
  }
}

/** Read exactly `length` bytes at `position`; returns fewer only at end of file. `into`: read into it (at least `length` bytes) instead of a new buffer. */
export function readAt(fd: number, length: number, position: number, into?: Uint8Array): Uint8Array {
  const buf = into ?? Buffer.allocUnsafeSlow(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, buf, done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done === buf.byteLength ? buf : buf.subarray(0, done);
}
