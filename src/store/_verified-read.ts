/**
 * Reading chunk records back, each verified against its hash and, in a plain
 * pack, against its record header: one at a time, or runs of neighbours.
 */
import { HASH_BYTES, hashEquals, sha256, sha256Into, toHex } from "../image/hash.ts";
import { RECORD_HEADER_BYTES, type RecordLocation, readAt } from "./_pack.ts";
import { CorruptChunkError, MissingChunkError } from "./errors.ts";

/** Bulk reads take neighbouring chunks this much at a time. */
const READ_RUN_BYTES = 4 << 20;

/** Where a record is, and how many bytes of record header come before its data (0 in a raw pack). */
export interface RecordAt extends RecordLocation {
  headerBytes: number;
}

/** A record's bytes read through `fd`, verified against `h` and the index (`isRaw`: a raw pack, no record header). */
export function readRecord(h: Uint8Array, row: RecordLocation, fd: number, isRaw: boolean): Uint8Array {
  if (isRaw) {
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

/**
 * The bytes of the chunks `hashes` (n × 32 bytes, no zero markers) at the
 * locations `locate` gives (asked on the first next()), in order, each
 * verified; neighbours in a pack are read with one pread. Throws
 * MissingChunkError or CorruptChunkError; `index` says which.
 * `isCheckedByReader`: the bytes are not hashed here, because whoever
 * takes them checks each against its hash anyway (a peer importing an
 * export verifies every chunk): a record's header is still checked.
 */
export function* readRuns(
  hashes: Uint8Array,
  locate: () => ReadonlyArray<RecordAt | null>,
  readFd: (pack: number) => number,
  options: { isTransient?: boolean; isCheckedByReader?: boolean } = {},
): Generator<Uint8Array> {
  const n = hashes.byteLength / HASH_BYTES;
  const locs = locate();
  const digest = new Uint8Array(HASH_BYTES);
  // Transient: every run is read into one buffer (no fresh pages to fault in per run); a chunk's bytes last until the next one.
  let scratch: Uint8Array | undefined;
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
    const fd = readFd(first.pack);
    let run: Uint8Array;
    try {
      if (options.isTransient && (scratch === undefined || scratch.byteLength < bytes)) scratch = Buffer.allocUnsafeSlow(Math.max(bytes, READ_RUN_BYTES));
      run = readAt(fd, bytes, first.offset, scratch?.subarray(0, bytes));
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
      if (!options.isCheckedByReader && !hashEquals(sha256Into(data, digest), h))
        throw Object.assign(new CorruptChunkError(toHex(h), "its bytes no longer match its hash"), { index: k });
      yield data;
    }
    i = end;
  }
}
