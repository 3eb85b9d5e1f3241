/**
 * The code of one ChunkWorkers thread (chunk-workers.ts starts it, see
 * threadEntry there; build.ts bundles it as an entrypoint of its own). It
 * runs the jobs of _thread-messages.ts: hash a file's chunks (also while it
 * grows), copy verified chunks from packs into a file, fdatasync a file,
 * write a growing file behind, check chunks that arrived against their hashes. Imports nothing of autopod but types: a thread
 * loads fast.
 */
import { dlopen, FFIType, type Pointer, ptr } from "bun:ffi";
import fs from "node:fs";
import type { CopyRun, JobMessage, ThreadMessage } from "./_thread-messages.ts";

declare const self: Worker;

const ZERO = new Uint8Array(1 << 20);
const HASH = 32;

function post(m: ThreadMessage, transfer: ArrayBuffer[] = []): void {
  self.postMessage(m, transfer);
}

function isZero(v: Uint8Array): boolean {
  if (v[0] !== 0 || v[v.length - 1] !== 0) return false;
  return Buffer.compare(v, ZERO.subarray(0, v.length)) === 0;
}

function readFully(fd: number, buf: Uint8Array, len: number, pos: number): number {
  let got = 0;
  while (got < len) {
    const n = fs.readSync(fd, buf, got, len - got, pos + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

let buf = new Uint8Array(0);
function buffer(n: number): Uint8Array {
  if (buf.length < n) buf = new Uint8Array(n);
  return buf;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The native 16-lane SHA-256 (src/store/sha256x16.ts), opened once per thread from the path a job brings. */
interface Native {
  fn: (data: Pointer, stride: number, len: number, out: Pointer) => void;
  /** The library, held for as long as the thread lives. */
  lib: { close(): void };
}
let x16: Native | null = null;
let x16Path: string | null = null;

function native(path: string | null): Native | null {
  if (!path) return null;
  if (x16Path !== path) {
    x16Path = path;
    try {
      const lib = dlopen(path, { sha256_x16: { args: [FFIType.ptr, FFIType.u32, FFIType.u32, FFIType.ptr], returns: FFIType.void } });
      x16 = { fn: (data, stride, len, out) => lib.symbols.sha256_x16(data, stride, len, out), lib };
    } catch {
      x16 = null;
    }
  }
  return x16;
}

const LANES = 16;

/**
 * SHA-256 of n chunks of len bytes, the first at data[first], one every
 * stride bytes, into out (32 bytes each from out[0]): 16 at a time natively
 * when it can, the rest with Bun's.
 */
function hashMany(nat: Native | null, data: Uint8Array, first: number, stride: number, len: number, n: number, out: Uint8Array): void {
  let i = 0;
  if (nat !== null && len % 64 === 0 && len > 0 && stride * (LANES - 1) + len < 0x7fffffff) {
    const base = ptr(data);
    const dest = ptr(out);
    for (; i + LANES <= n; i += LANES) nat.fn((base + first + i * stride) as Pointer, stride, len, (dest + i * HASH) as Pointer);
  }
  for (; i < n; i++) Bun.CryptoHasher.hash("sha256", data.subarray(first + i * stride, first + i * stride + len), out.subarray(i * HASH, i * HASH + HASH));
}

/** Async, so that a job waiting for a growing file lets the thread work on other jobs meanwhile. */
async function hashJob(m: Extract<JobMessage, { type: "hash" }>): Promise<void> {
  const ctl = new Int32Array(m.ctl, 0, 4);
  const fin = new Float64Array(m.ctl, 16, 1);
  const cs = m.chunkSize;
  const fd = fs.openSync(m.path, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  try {
    for (;;) {
      const b = Atomics.add(ctl, 0, 1);
      const start = b * m.blockBytes;
      let end: number;
      for (;;) {
        if (Atomics.load(ctl, 2) !== 0) return;
        const known = Atomics.load(ctl, 1) !== 0;
        const final = fin[0]!;
        if (known && start >= final) return;
        end = known ? Math.min(final, start + m.blockBytes) : start + m.blockBytes;
        const size = fs.fstatSync(fd).size;
        if (size >= end) break;
        if (known) throw new Error(`it is ${size} bytes, shorter than the ${final} it was declared to be`);
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
      post({ job: m.job, block: b, hashes, zero }, [hashes.buffer, zero.buffer]);
    }
  } finally {
    fs.closeSync(fd);
  }
}

function copyJob(m: Extract<JobMessage, { type: "copy" }>): void {
  const ctl = new Int32Array(m.ctl, 0, 4);
  const expected = new Uint8Array(m.expected);
  const packFds = new Map<number, number>();
  const out = fs.openSync(m.dest, "r+");
  const nat = native(m.lib);
  let digests = new Uint8Array(0);
  try {
    for (;;) {
      const r = Atomics.add(ctl, 0, 1);
      if (r >= m.runs.length || Atomics.load(ctl, 2) !== 0) return;
      const run: CopyRun = m.runs[r]!;
      let fd = packFds.get(run.pack);
      if (fd === undefined) {
        fd = fs.openSync(m.packs[run.pack]!, "r");
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
          post({ job: m.job, bad: idx, reason: "the pack ends before the chunk" });
          Atomics.store(ctl, 2, 1);
          return;
        }
        if (run.headerBytes > 0) {
          const rec = data.subarray(at, at + run.headerBytes);
          const len = rec[32]! | (rec[33]! << 8) | (rec[34]! << 16) | (rec[35]! << 24);
          if (Buffer.compare(rec.subarray(0, HASH), want) !== 0 || len >>> 0 !== run.length) {
            post({ job: m.job, bad: idx, reason: "the index and the pack disagree" });
            Atomics.store(ctl, 2, 1);
            return;
          }
        }
        const v = data.subarray(at + run.headerBytes, at + stride);
        if (Buffer.compare(digests.subarray(i * HASH, i * HASH + HASH), want) !== 0) {
          post({ job: m.job, bad: idx, reason: "its bytes no longer match its hash" });
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

/** sync_file_range(2), for write-behind: only on the syncer thread (it may block on a busy disk). */
let syncFileRange: ((fd: number, off: number, len: number) => number) | null = null;
function loadSyncFileRange(): (fd: number, off: number, len: number) => number {
  if (syncFileRange === null) {
    try {
      const lib = dlopen("libc.so.6", { sync_file_range: { args: [FFIType.i32, FFIType.i64, FFIType.i64, FFIType.u32], returns: FFIType.i32 } });
      syncFileRange = (fd, off, len) => lib.symbols.sync_file_range(fd, off, len, 2 /* SYNC_FILE_RANGE_WRITE */);
    } catch {
      syncFileRange = () => -1;
    }
  }
  return syncFileRange;
}

/**
 * Start writing a growing file to disk as it grows, in WRITE_BEHIND steps,
 * until told the writer is done (ctl[0] = 1); then the rest. Only starts
 * writeback: the caller's fdatasync makes it durable, and finds little left
 * to wait for.
 */
const WRITE_BEHIND = 4 << 20;
async function writeBehindJob(m: Extract<JobMessage, { type: "write-behind" }>): Promise<number> {
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

function syncJob(m: Extract<JobMessage, { type: "sync" }>): void {
  const fd = fs.openSync(m.path, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  try {
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** The indexes of the chunks in `m.data` whose bytes do not match the hash before them. */
function verifyJob(m: Extract<JobMessage, { type: "verify" }>): number[] {
  const data = new Uint8Array(m.data);
  const digest = new Uint8Array(HASH);
  const mismatched: number[] = [];
  let at = 0;
  for (let i = 0; i < m.lengths.length; i++) {
    const len = m.lengths[i]!;
    if (at + HASH + len > data.byteLength) {
      mismatched.push(i);
      break;
    }
    Bun.CryptoHasher.hash("sha256", data.subarray(at + HASH, at + HASH + len), digest);
    if (Buffer.compare(digest, data.subarray(at, at + HASH)) !== 0) mismatched.push(i);
    at += HASH + len;
  }
  return mismatched;
}

self.onmessage = async (e: MessageEvent<JobMessage>) => {
  const m = e.data;
  try {
    if (m.type === "verify") {
      const mismatched = verifyJob(m);
      post({ job: m.job, mismatched, data: m.data }, [m.data]);
      return;
    }
    if (m.type === "hasher") {
      post({ job: m.job, done: true, hasher: native(m.lib) !== null ? "native" : "bun" });
      return;
    }
    if (m.type === "hash") await hashJob(m);
    else if (m.type === "write-behind") {
      post({ job: m.job, submitted: await writeBehindJob(m) });
      return;
    } else if (m.type === "sync") syncJob(m);
    else copyJob(m);
    // Which SHA-256 this thread ran for the job: the library it was given, if it could load it.
    post({ job: m.job, done: true, hasher: "lib" in m && native(m.lib) !== null ? "native" : "bun" });
  } catch (err) {
    post({ job: m.job, error: String((err as Error | undefined)?.message || err) });
  }
};
