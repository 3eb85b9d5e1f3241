/**
 * SHA-256 of fixed-size chunks on every core. A small pool of worker threads
 * (plain JS from a Blob URL, so it works inside the compiled binary) that:
 *
 * - hashes a file's chunks (hashFile), also while another process is still
 *   appending to it (CRIU writing pages-*.img): only bytes below the file's
 *   current size are read, and the end is whatever size the caller declares
 *   once the writer has exited;
 * - copies chunks from pack files into a file being materialized
 *   (copyVerified), checking each record's header and each chunk's bytes
 *   against the hash the manifest expects, before any of it is written.
 *
 * Work is split in blocks that threads claim from a shared counter, so a slow
 * thread never holds the others up. All-zero chunks are reported as the zero
 * marker (ZERO_HASH) without being hashed.
 */
import fs from "node:fs";
import os from "node:os";
import { CorruptChunkError } from "./errors.ts";
import { HASH_BYTES, toHex } from "../image/hash.ts";
import { sha256x16Library } from "./sha256x16.ts";

/** Hashes of a file's chunks, in order. */
export interface FileHashes {
  /** Bytes hashed (the file's size). */
  size: number;
  chunkSize: number;
  /** ceil(size / chunkSize) × 32 bytes; all zeros (the zero marker) for a chunk of zeros. */
  hashes: Uint8Array;
  /** 1 for a chunk of zeros, per chunk. */
  zero: Uint8Array;
}

/** A hashFile run on a file that is still being written. */
export interface GrowingHash {
  /** The writer is done: the file ends at its current size. Resolves `result`. */
  finish(): void;
  /** Stop; `result` rejects. */
  abort(reason?: string): void;
  readonly result: Promise<FileHashes>;
  /** Bytes hashed so far. */
  readonly hashedBytes: number;
}

/** Consecutive chunks of one pack, copied to consecutive offsets of the file being made. */
export interface CopyRun {
  /** Index into the pack paths. */
  pack: number;
  /** Offset of the first record (its header, or its data in a raw pack). */
  offset: number;
  /** Bytes before each chunk's data: 36 in a pack, 0 in a raw pack. */
  headerBytes: number;
  /** Data bytes of each chunk of the run (they are all the same length). */
  length: number;
  /** Chunks in the run. */
  count: number;
  /** Index of the first chunk in the file (its hash is expected[first]). */
  first: number;
}

/** The worker's source: plain JS, no imports but node:fs and bun:ffi. */
const WORKER_SOURCE = `
const fs = require("node:fs");
const ZERO = new Uint8Array(1 << 20);
const HASH = 32;
function isZero(v) {
  if (v[0] !== 0 || v[v.length - 1] !== 0) return false;
  return Buffer.compare(v, ZERO.subarray(0, v.length)) === 0;
}
function readFully(fd, buf, len, pos) {
  let got = 0;
  while (got < len) {
    const n = fs.readSync(fd, buf, got, len - got, pos + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}
let buf = new Uint8Array(0);
function buffer(n) {
  if (buf.length < n) buf = new Uint8Array(n);
  return buf;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// The native 16-lane SHA-256 (src/store/sha256x16.ts), opened once per thread from the path a job brings.
let x16 = null;
let x16Path = null;
function native(path) {
  if (!path) return null;
  if (x16Path !== path) {
    x16Path = path;
    try {
      const { dlopen, FFIType, ptr } = require("bun:ffi");
      const lib = dlopen(path, { sha256_x16: { args: [FFIType.ptr, FFIType.u32, FFIType.u32, FFIType.ptr], returns: FFIType.void } });
      x16 = { fn: lib.symbols.sha256_x16, ptr, lib }; // the library held for as long as the thread lives

    } catch {
      x16 = null;
    }
  }
  return x16;
}
const LANES = 16;
// SHA-256 of n chunks of len bytes, the first at data[first], one every stride bytes, into out
// (32 bytes each from out[0]): 16 at a time natively when it can, the rest with Bun's.
function hashMany(nat, data, first, stride, len, n, out) {
  let i = 0;
  if (nat !== null && len % 64 === 0 && len > 0 && stride * (LANES - 1) + len < 0x7fffffff) {
    const base = nat.ptr(data);
    const dest = nat.ptr(out);
    for (; i + LANES <= n; i += LANES) nat.fn(base + first + i * stride, stride, len, dest + i * HASH);
  }
  for (; i < n; i++) Bun.CryptoHasher.hash("sha256", data.subarray(first + i * stride, first + i * stride + len), out.subarray(i * HASH, i * HASH + HASH));
}
// Async, so that a job waiting for a growing file lets the thread work on other jobs meanwhile.
async function hashJob(m) {
  const ctl = new Int32Array(m.ctl, 0, 4);
  const fin = new Float64Array(m.ctl, 16, 1);
  const cs = m.chunkSize;
  const fd = fs.openSync(m.path, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  try {
    for (;;) {
      const b = Atomics.add(ctl, 0, 1);
      const start = b * m.blockBytes;
      let end;
      for (;;) {
        if (Atomics.load(ctl, 2) !== 0) return;
        const seq = Atomics.load(ctl, 3);
        const known = Atomics.load(ctl, 1) !== 0;
        const final = fin[0];
        if (known && start >= final) return;
        end = known ? Math.min(final, start + m.blockBytes) : start + m.blockBytes;
        const size = fs.fstatSync(fd).size;
        if (size >= end) break;
        if (known) throw new Error("it is " + size + " bytes, shorter than the " + final + " it was declared to be");
        void seq;
        await sleep(2);
      }
      const len = end - start;
      const data = buffer(m.blockBytes); // no await from here to the hashes being posted: safe to share
      const got = readFully(fd, data, len, start);
      if (got !== len) throw new Error("it shrank while it was read");
      const n = Math.ceil(len / cs);
      const hashes = new Uint8Array(n * HASH);
      const zero = new Uint8Array(n);
      const full = Math.floor(len / cs);
      let zeros = 0;
      for (let i = 0; i < n; i++) {
        if (isZero(data.subarray(i * cs, Math.min(len, (i + 1) * cs)))) {
          zero[i] = 1;
          zeros++;
        }
      }
      // A zero chunk's hash is the zero marker (all-zero bytes). Natively, 16 chunks at a time cost
      // less than half as much as one by one, so zeros among them are hashed too, then cleared,
      // unless they are most of the block.
      const nat = zeros * 2 < n ? native(m.lib) : null;
      if (nat !== null) {
        hashMany(nat, data, 0, cs, cs, full, hashes);
        if (full < n && zero[full] === 0) Bun.CryptoHasher.hash("sha256", data.subarray(full * cs, len), hashes.subarray(full * HASH, n * HASH));
        if (zeros > 0) for (let i = 0; i < n; i++) if (zero[i] === 1) hashes.fill(0, i * HASH, (i + 1) * HASH);
      } else {
        for (let i = 0; i < n; i++) {
          if (zero[i] === 0) Bun.CryptoHasher.hash("sha256", data.subarray(i * cs, Math.min(len, (i + 1) * cs)), hashes.subarray(i * HASH, i * HASH + HASH));
        }
      }
      postMessage({ job: m.job, block: b, hashes, zero }, [hashes.buffer, zero.buffer]);
    }
  } finally {
    fs.closeSync(fd);
  }
}
function copyJob(m) {
  const ctl = new Int32Array(m.ctl, 0, 4);
  const expected = new Uint8Array(m.expected);
  const packFds = new Map();
  const out = fs.openSync(m.dest, "r+");
  const nat = native(m.lib);
  let digests = new Uint8Array(0);
  try {
    for (;;) {
      const r = Atomics.add(ctl, 0, 1);
      if (r >= m.runs.length || Atomics.load(ctl, 2) !== 0) return;
      const run = m.runs[r];
      let fd = packFds.get(run.pack);
      if (fd === undefined) {
        fd = fs.openSync(m.packs[run.pack], "r");
        packFds.set(run.pack, fd);
      }
      const stride = run.headerBytes + run.length;
      const total = stride * run.count;
      const data = buffer(total);
      const got = readFully(fd, data, total, run.offset);
      let outBuf = data;
      if (run.headerBytes > 0) outBuf = new Uint8Array(run.length * run.count);
      // Every whole chunk read, hashed first (16 at a time natively), then checked in order.
      const whole = Math.min(run.count, Math.floor(got / stride));
      if (digests.length < whole * HASH) digests = new Uint8Array(whole * HASH);
      hashMany(nat, data, run.headerBytes, stride, run.length, whole, digests);
      for (let i = 0; i < run.count; i++) {
        const idx = run.first + i;
        const want = expected.subarray(idx * HASH, idx * HASH + HASH);
        const at = i * stride;
        if (at + stride > got) {
          postMessage({ job: m.job, bad: idx, reason: "the pack ends before the chunk" });
          Atomics.store(ctl, 2, 1);
          return;
        }
        if (run.headerBytes > 0) {
          const rec = data.subarray(at, at + run.headerBytes);
          const len = rec[32] | (rec[33] << 8) | (rec[34] << 16) | (rec[35] << 24);
          if (Buffer.compare(rec.subarray(0, HASH), want) !== 0 || len >>> 0 !== run.length) {
            postMessage({ job: m.job, bad: idx, reason: "the index and the pack disagree" });
            Atomics.store(ctl, 2, 1);
            return;
          }
        }
        const v = data.subarray(at + run.headerBytes, at + stride);
        if (Buffer.compare(digests.subarray(i * HASH, i * HASH + HASH), want) !== 0) {
          postMessage({ job: m.job, bad: idx, reason: "its bytes no longer match its hash" });
          Atomics.store(ctl, 2, 1);
          return;
        }
        if (outBuf !== data) outBuf.set(v, i * run.length);
      }
      const bytes = run.length * run.count;
      let done = 0;
      const pos = run.first * m.chunkSize;
      while (done < bytes) done += fs.writeSync(out, outBuf, done, bytes - done, pos + done);
    }
  } finally {
    for (const fd of packFds.values()) fs.closeSync(fd);
    fs.closeSync(out);
  }
}
// sync_file_range(2), for write-behind: only on the syncer thread (it may block on a busy disk).
let syncFileRange = null;
function loadSyncFileRange() {
  if (syncFileRange === null) {
    try {
      const { dlopen, FFIType } = require("bun:ffi");
      const lib = dlopen("libc.so.6", { sync_file_range: { args: [FFIType.i32, FFIType.i64, FFIType.i64, FFIType.u32], returns: FFIType.i32 } });
      syncFileRange = (fd, off, len) => lib.symbols.sync_file_range(fd, off, len, 2 /* SYNC_FILE_RANGE_WRITE */);
    } catch {
      syncFileRange = () => -1;
    }
  }
  return syncFileRange;
}
// Start writing a growing file to disk as it grows, in WRITE_BEHIND steps, until told the
// writer is done (ctl[0] = 1); then the rest. Only starts writeback: the caller's fdatasync
// makes it durable, and finds little left to wait for.
const WRITE_BEHIND = 4 << 20;
async function writeBehindJob(m) {
  const ctl = new Int32Array(m.ctl, 0, 2);
  const submit = loadSyncFileRange();
  const fd = fs.openSync(m.path, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  let done = 0;
  try {
    for (;;) {
      const isLast = Atomics.load(ctl, 0) !== 0;
      const size = fs.fstatSync(fd).size;
      const end = isLast ? size : size - (size % WRITE_BEHIND);
      if (end > done) {
        if (submit(fd, done, end - done) !== 0) return done;
        done = end;
      }
      if (isLast) return done;
      await sleep(4);
    }
  } finally {
    fs.closeSync(fd);
  }
}
self.onmessage = async (e) => {
  const m = e.data;
  try {
    if (m.type === "hash") await hashJob(m);
    else if (m.type === "write-behind") {
      postMessage({ job: m.job, submitted: await writeBehindJob(m) });
      return;
    }
    else if (m.type === "sync") {
      const fd = fs.openSync(m.path, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
      try {
        fs.fdatasyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    } else copyJob(m);
    postMessage({ job: m.job, done: true });
  } catch (err) {
    postMessage({ job: m.job, error: String((err && err.message) || err) });
  }
};
`;

/** Hashing block: big enough to amortize a message, small enough to share a file among threads. */
const HASH_BLOCK_BYTES = 1 << 20;

type Message =
  | { job: number; block: number; hashes: Uint8Array; zero: Uint8Array }
  | { job: number; submitted: number }
  | { job: number; done: true }
  | { job: number; error: string }
  | { job: number; bad: number; reason: string };

interface Job {
  onMessage(m: Message): void;
  fail(e: Error): void;
}

/** A pool of hashing threads. One per process is enough: see ChunkWorkers.shared(). */
export class ChunkWorkers {
  readonly threads: number;
  #workers: Worker[] = [];
  #syncer: Worker | null = null;
  #syncing = 0;
  #url: string | null = null;
  readonly #jobs = new Map<number, Job>();
  #nextJob = 1;

  readonly #isNativeOn: boolean;

  /** `native`: use the 16-lane SHA-256 when there is one (sha256x16.ts); false for Bun's alone. */
  constructor(threads = defaultThreads(), options: { native?: boolean } = {}) {
    this.threads = Math.max(1, threads);
    this.#isNativeOn = options.native ?? true;
  }

  /** Whether chunks are hashed 16 at a time natively (else one by one with Bun's SHA-256). */
  get isNative(): boolean {
    return this.#native() !== null;
  }

  #native(): string | null {
    return this.#isNativeOn ? sha256x16Library() : null;
  }

  static #shared: ChunkWorkers | undefined;
  /** The process's pool (threads made on first use; they do not keep the process alive). */
  static shared(): ChunkWorkers {
    ChunkWorkers.#shared ??= new ChunkWorkers();
    return ChunkWorkers.#shared;
  }

  /** Hash the chunks of a complete file. */
  hashFile(path: string, chunkSize: number): Promise<FileHashes> {
    const h = this.#hash(path, chunkSize, this.threads);
    h.finish();
    return h.result;
  }

  /**
   * Hash a file another process is still appending to. Bytes are read only
   * once the file has grown past them; call finish() when the writer has
   * exited (the file's size then is its end). Until then only `threads`
   * threads work on it (default: all but one, so the writer keeps a core);
   * after, all of them.
   */
  hashGrowingFile(path: string, chunkSize: number, threads = Math.max(1, this.threads - 1)): GrowingHash {
    return this.#hash(path, chunkSize, Math.min(this.threads, Math.max(1, threads)));
  }

  /**
   * Fill `dest` (an existing file of the right size) with chunks copied from
   * packs, verifying each record and each chunk against `expected` (the
   * file's concatenated chunk hashes) before its run is written. Throws a
   * CorruptChunkError naming the first bad chunk (the caller adds the file).
   */
  async copyVerified(dest: string, chunkSize: number, expected: Uint8Array, packs: string[], runs: CopyRun[]): Promise<void> {
    if (runs.length === 0) return;
    const ctlBuf = new SharedArrayBuffer(32);
    const ctl = new Int32Array(ctlBuf, 0, 4);
    const shared = new SharedArrayBuffer(expected.byteLength);
    new Uint8Array(shared).set(expected);
    const n = Math.min(this.threads, runs.length);
    const workers = this.#pool(n);
    const job = this.#nextJob++;
    await new Promise<void>((resolve, reject) => {
      let running = n;
      let failure: Error | null = null;
      this.#addJob(job, {
        onMessage: (m) => {
          if ("bad" in m) {
            failure ??= new CorruptChunkError(toHex(expected.subarray(m.bad * HASH_BYTES, (m.bad + 1) * HASH_BYTES)), m.reason);
          } else if ("error" in m) {
            failure ??= new Error(m.error);
            Atomics.store(ctl, 2, 1);
          }
          if ("done" in m || "error" in m) {
            if (--running === 0) {
              this.#endJob(job);
              if (failure) reject(failure);
              else resolve();
            }
          }
        },
        fail: (e) => {
          this.#endJob(job);
          reject(e);
        },
      });
      for (const w of workers) w.postMessage({ type: "copy", job, ctl: ctlBuf, expected: shared, dest, chunkSize, packs, runs, lib: this.#native() });
    });
  }

  /**
   * fdatasync a file on a thread of its own (not a hashing thread, and not
   * the I/O threads that every fs.promises call of this process shares).
   */
  syncFile(path: string): Promise<void> {
    const w = this.#syncerThread();
    const job = this.#nextJob++;
    return new Promise<void>((resolve, reject) => {
      this.#jobs.set(job, {
        onMessage: (m) => {
          if (!("done" in m) && !("error" in m)) return;
          this.#endJob(job);
          if (--this.#syncing === 0) w.unref();
          if ("error" in m) reject(new Error(`Cannot sync "${path}": ${m.error}`));
          else resolve();
        },
        fail: (e) => {
          this.#endJob(job);
          reject(e);
        },
      });
      if (this.#syncing++ === 0) w.ref();
      w.postMessage({ type: "sync", job, path });
    });
  }

  /**
   * Start writing a file another process is appending to (CRIU's page
   * images) to disk as it grows, on the syncer thread, so that the fdatasync
   * that makes it durable finds most of it written. `finish()` says the
   * writer is done: the rest is submitted, and it resolves to the bytes
   * submitted in all. Only starts writeback; durability is still the
   * caller's fdatasync. A failure only means less was written ahead: it
   * resolves with what was submitted.
   */
  writeBehind(path: string): { finish(): Promise<number> } {
    const w = this.#syncerThread();
    const ctlBuf = new SharedArrayBuffer(8);
    const ctl = new Int32Array(ctlBuf);
    const job = this.#nextJob++;
    const result = new Promise<number>((resolve) => {
      this.#jobs.set(job, {
        onMessage: (m) => {
          if (!("submitted" in m) && !("error" in m)) return;
          this.#endJob(job);
          if (--this.#syncing === 0) w.unref();
          resolve("submitted" in m ? m.submitted : 0);
        },
        fail: () => {
          this.#endJob(job);
          resolve(0);
        },
      });
    });
    if (this.#syncing++ === 0) w.ref();
    w.postMessage({ type: "write-behind", job, path, ctl: ctlBuf });
    return {
      finish: () => {
        Atomics.store(ctl, 0, 1);
        return result;
      },
    };
  }

  /** End the threads (they are made again if needed). */
  close(): void {
    for (const w of this.#workers) w.terminate();
    this.#workers = [];
    this.#syncer?.terminate();
    this.#syncer = null;
    this.#syncing = 0;
    for (const j of this.#jobs.values()) j.fail(new Error("the hashing threads were stopped"));
    this.#jobs.clear();
  }

  #syncerThread(): Worker {
    if (this.#syncer === null) {
      this.#syncer = this.#spawn();
      this.#syncer.unref();
    }
    return this.#syncer;
  }

  #hash(path: string, chunkSize: number, threads: number): GrowingHash {
    const ctlBuf = new SharedArrayBuffer(32);
    const ctl = new Int32Array(ctlBuf, 0, 4);
    const fin = new Float64Array(ctlBuf, 16, 1);
    const blockBytes = Math.max(chunkSize, Math.floor(HASH_BLOCK_BYTES / chunkSize) * chunkSize);
    const job = this.#nextJob++;
    const blocks = new Map<number, { hashes: Uint8Array; zero: Uint8Array }>();
    let hashedChunks = 0;
    const workers = this.#pool(this.threads);
    let running = threads;
    let failure: Error | null = null;
    let settle!: { resolve: (h: FileHashes) => void; reject: (e: Error) => void };
    const result = new Promise<FileHashes>((resolve, reject) => (settle = { resolve, reject }));
    result.catch(() => undefined); // the caller may abort before awaiting
    let isSettled = false;
    const finishJob = () => {
      if (isSettled) return;
      isSettled = true;
      this.#endJob(job);
      if (failure) return settle.reject(failure);
      const size = fin[0]!;
      const n = Math.ceil(size / chunkSize);
      const hashes = new Uint8Array(n * HASH_BYTES);
      const zero = new Uint8Array(n);
      const perBlock = blockBytes / chunkSize;
      for (let b = 0; b * perBlock < n; b++) {
        const got = blocks.get(b);
        if (!got) return settle.reject(new Error(`block ${b} of "${path}" was not hashed`));
        hashes.set(got.hashes, b * perBlock * HASH_BYTES);
        zero.set(got.zero, b * perBlock);
      }
      settle.resolve({ size, chunkSize, hashes, zero });
    };
    this.#addJob(job, {
      onMessage: (m) => {
        if ("block" in m) {
          blocks.set(m.block, { hashes: m.hashes, zero: m.zero });
          hashedChunks += m.zero.length;
        } else if ("error" in m) {
          failure ??= new Error(`Cannot hash "${path}": ${m.error}`);
          Atomics.store(ctl, 2, 1);
        }
        if (("done" in m || "error" in m) && --running === 0) finishJob();
      },
      fail: (e) => {
        failure ??= e;
        isSettled = true;
        this.#endJob(job);
        settle.reject(e);
      },
    });
    const message = { type: "hash", job, path, chunkSize, blockBytes, ctl: ctlBuf, lib: this.#native() };
    for (const w of workers.slice(0, threads)) w.postMessage(message);
    // The rest join once the end is known: they claim blocks from the same counter.
    const joinTheRest = () => {
      for (const w of workers.slice(threads)) {
        running++;
        w.postMessage(message);
      }
      threads = workers.length;
    };
    const wake = () => {
      Atomics.add(ctl, 3, 1);
      Atomics.notify(ctl, 3);
    };
    return {
      result,
      get hashedBytes() {
        return hashedChunks * chunkSize;
      },
      finish: () => {
        joinTheRest();
        try {
          fin[0] = fs.statSync(path).size;
        } catch (e) {
          failure ??= e as Error;
          Atomics.store(ctl, 2, 1);
        }
        Atomics.store(ctl, 1, 1);
        wake();
      },
      abort: (reason = "aborted") => {
        failure ??= new Error(`Hashing "${path}" was stopped: ${reason}`);
        Atomics.store(ctl, 2, 1);
        Atomics.store(ctl, 1, 1);
        wake();
      },
    };
  }

  /** Threads keep the process alive only while they have work. */
  #addJob(id: number, job: Job): void {
    this.#jobs.set(id, job);
    for (const w of this.#workers) w.ref();
  }

  #endJob(id: number): void {
    this.#jobs.delete(id);
    if (this.#jobs.size === 0) for (const w of this.#workers) w.unref();
  }

  #pool(n: number): Worker[] {
    while (this.#workers.length < this.threads) {
      const w = this.#spawn();
      w.unref();
      this.#workers.push(w);
    }
    return this.#workers.slice(0, n);
  }

  #spawn(): Worker {
    this.#url ??= URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "application/javascript" }));
    const w = new Worker(this.#url);
    w.onmessage = (e: MessageEvent<Message>) => this.#jobs.get(e.data.job)?.onMessage(e.data);
    w.onerror = (e) => {
      const err = new Error(`A hashing thread failed: ${e.message}`);
      this.#workers = this.#workers.filter((x) => x !== w);
      if (this.#syncer === w) this.#syncer = null;
      for (const j of [...this.#jobs.values()]) j.fail(err);
      this.#jobs.clear();
      w.terminate();
    };
    return w;
  }
}

function defaultThreads(): number {
  const env = Number(process.env.AUTOPOD_HASH_THREADS);
  if (Number.isInteger(env) && env > 0) return env;
  return Math.min(4, typeof os.availableParallelism === "function" ? os.availableParallelism() : os.cpus().length);
}
