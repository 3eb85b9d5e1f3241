/**
 * SHA-256 of fixed-size chunks on every core. A small pool of worker threads
 * (chunk-thread.ts; what they say to each other: _thread-messages.ts) that:
 *
 * - hashes a file's chunks (hashFile), also while another process is still
 *   appending to it (CRIU writing pages-*.img): only bytes below the file's
 *   current size are read, and the end is whatever size the caller declares
 *   once the writer has exited;
 * - copies chunks from pack files into a file being materialized
 *   (copyVerified), checking each record's header and each chunk's bytes
 *   against the hash the manifest expects, before any of it is written;
 * - checks chunks that arrived from elsewhere against their claimed hashes
 *   (verifyChunks), so an import's thread only parses and writes.
 *
 * Work is split in blocks that threads claim from a shared counter, so a slow
 * thread never holds the others up. All-zero chunks are reported as the zero
 * marker (ZERO_HASH) without being hashed.
 */
import fs from "node:fs";
import os from "node:os";
import { CorruptChunkError } from "./errors.ts";
import { HASH_BYTES, toHex } from "../image/hash.ts";
import type { CopyRun, JobMessage, ThreadMessage } from "./_thread-messages.ts";
import { sha256x16Library } from "./sha256x16.ts";

export type { CopyRun } from "./_thread-messages.ts";

/** Hashes of a file's chunks, in order. */
export interface FileHashes {
  /** Bytes hashed (the file's size). */
  size: number;
  chunkSize: number;
  /** ceil(size / chunkSize) × 32 bytes; all zeros (the zero marker) for a chunk of zeros. */
  hashes: Uint8Array;
  /** 1 for a chunk of zeros, per chunk. */
  zero: Uint8Array;
  /**
   * The SHA-256 the threads that hashed it ran: "native" when every one had
   * the 16-lane library loaded, "bun" when none had (none asked for, or its
   * dlopen failed), "mixed" otherwise. Absent when not hashed by ChunkWorkers.
   */
  hasher?: Hasher;
  /** How many threads worked on it. Absent when not hashed by ChunkWorkers. */
  threads?: number;
}

/** Which SHA-256 a hashing thread ran: the native 16-lane one (sha256x16.ts), or Bun's. */
export type Hasher = "native" | "bun" | "mixed";

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

/** Hashing block: big enough to amortize a message, small enough to share a file among threads. */
const HASH_BLOCK_BYTES = 1 << 20;

interface Job {
  onMessage(m: ThreadMessage): void;
  fail(e: Error): void;
}

/** The shared pool's settings: `threads` 0 or absent means defaultThreads(). */
export interface SharedPoolOptions {
  threads?: number;
  native?: boolean;
}

/** A pool of hashing threads. One per process is enough: see ChunkWorkers.shared(). */
export class ChunkWorkers {
  readonly threads: number;
  #workers: Worker[] = [];
  #syncer: Worker | null = null;
  #syncing = 0;
  readonly #jobs = new Map<number, Job>();
  #nextJob = 1;

  readonly #isNativeOn: boolean;

  readonly #library: string | undefined;

  /**
   * `native`: use the 16-lane SHA-256 when there is one (sha256x16.ts); false for Bun's alone.
   * `library`: the native library to load (default: sha256x16Library(), checked against the CPU).
   */
  constructor(threads = defaultThreads(), options: { native?: boolean; library?: string } = {}) {
    this.threads = Math.max(1, threads);
    this.#isNativeOn = options.native ?? true;
    this.#library = options.library;
  }

  /** Whether the threads are given the native library to load (whether they could: hashers(), FileHashes.hasher). */
  get isNative(): boolean {
    return this.#native() !== null;
  }

  #native(): string | null {
    if (!this.#isNativeOn) return null;
    return this.#library ?? sha256x16Library(true);
  }

  /** Ask every thread which SHA-256 it runs (the native library loads in each thread, and may fail there alone). */
  async hashers(): Promise<Array<"native" | "bun">> {
    const lib = this.#native();
    return Promise.all(
      this.#pool(this.threads).map((w) => {
        const job = this.#nextJob++;
        return new Promise<"native" | "bun">((resolve, reject) => {
          this.#addJob(job, {
            onMessage: (m) => {
              if (!("done" in m) && !("error" in m)) return;
              this.#endJob(job);
              if ("error" in m) reject(new Error(m.error));
              else resolve(m.hasher ?? "bun");
            },
            fail: (e) => {
              this.#endJob(job);
              reject(e);
            },
          });
          w.postMessage({ type: "hasher", job, lib } satisfies JobMessage);
        });
      }),
    );
  }

  static #shared: ChunkWorkers | undefined;
  static #sharedOptions: SharedPoolOptions = {};

  /**
   * How the process's pool is to be made (the agent, from its config's
   * store.hash_threads and store.native_hash), before it is first used.
   */
  static configureShared(options: SharedPoolOptions): void {
    if (ChunkWorkers.#shared !== undefined) throw new Error("The shared hashing threads are already running: configure them before their first use");
    ChunkWorkers.#sharedOptions = options;
  }

  /** The process's pool (threads made on first use; they do not keep the process alive). */
  static shared(): ChunkWorkers {
    const o = ChunkWorkers.#sharedOptions;
    ChunkWorkers.#shared ??= new ChunkWorkers(o.threads || undefined, { native: o.native });
    return ChunkWorkers.#shared;
  }

  /** Hash the chunks of a complete file, on at most `threads` threads (default: all). */
  hashFile(path: string, chunkSize: number, threads = this.threads): Promise<FileHashes> {
    const h = this.#hash(path, chunkSize, Math.min(this.threads, Math.max(1, threads)));
    // The file is whole: its end is known now, and only `threads` threads ever work on it.
    h.end(false);
    return h.result;
  }

  /**
   * hashFile on `threads` threads, with a way to let every thread join later:
   * a restore checks its page images on all threads but one while CRIU reads
   * them, and on all once CRIU is done (useAllThreads; a no-op once hashed).
   */
  hashFileThenAll(path: string, chunkSize: number, threads: number): { result: Promise<FileHashes>; useAllThreads(): void } {
    const h = this.#hash(path, chunkSize, Math.min(this.threads, Math.max(1, threads)));
    h.end(false);
    return { result: h.result, useAllThreads: () => h.joinAll() };
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
      for (const w of workers)
        w.postMessage({ type: "copy", job, ctl: ctlBuf, expected: shared, dest, chunkSize, packs, runs, lib: this.#native() } satisfies JobMessage);
    });
  }

  /**
   * Check chunks that arrived with claimed hashes, on a hashing thread (in
   * turn, so that batches in flight spread over the threads): `data` holds,
   * for each chunk, its 32-byte claimed hash then its `lengths[i]` bytes, and
   * is handed to the thread (detached here) and back. Resolves with the
   * indexes whose bytes do not match their hash (empty: all verified), and
   * the bytes.
   */
  verifyChunks(data: ArrayBuffer, lengths: Uint32Array): Promise<{ mismatched: number[]; data: ArrayBuffer }> {
    const w = this.#pool(this.threads)[this.#nextVerifier++ % this.threads]!;
    const job = this.#nextJob++;
    return new Promise((resolve, reject) => {
      this.#addJob(job, {
        onMessage: (m) => {
          if ("mismatched" in m) {
            this.#endJob(job);
            resolve({ mismatched: m.mismatched, data: m.data });
          } else if ("error" in m) {
            this.#endJob(job);
            reject(new Error(`Cannot verify chunks: ${m.error}`));
          }
        },
        fail: (e) => {
          this.#endJob(job);
          reject(e);
        },
      });
      w.postMessage({ type: "verify", job, data, lengths } satisfies JobMessage, [data]);
    });
  }

  #nextVerifier = 0;

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
      w.postMessage({ type: "sync", job, path } satisfies JobMessage);
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
    w.postMessage({ type: "write-behind", job, path, ctl: ctlBuf } satisfies JobMessage);
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

  #hash(path: string, chunkSize: number, threads: number): GrowingHash & { end(isJoinedByAll: boolean): void; joinAll(): void } {
    const ctlBuf = new SharedArrayBuffer(32);
    const ctl = new Int32Array(ctlBuf, 0, 4);
    const fin = new Float64Array(ctlBuf, 16, 1);
    const blockBytes = Math.max(chunkSize, Math.floor(HASH_BLOCK_BYTES / chunkSize) * chunkSize);
    const job = this.#nextJob++;
    const blocks = new Map<number, { hashes: Uint8Array; zero: Uint8Array }>();
    let hashedChunks = 0;
    const hashers = new Set<"native" | "bun">();
    let threadsDone = 0;
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
      settle.resolve({
        size,
        chunkSize,
        hashes,
        zero,
        hasher: hashers.size === 1 ? [...hashers][0]! : hashers.size === 0 ? "bun" : "mixed",
        threads: threadsDone,
      });
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
        if ("done" in m && m.hasher) hashers.add(m.hasher);
        if ("done" in m) threadsDone++;
        if (("done" in m || "error" in m) && --running === 0) finishJob();
      },
      fail: (e) => {
        failure ??= e;
        isSettled = true;
        this.#endJob(job);
        settle.reject(e);
      },
    });
    const message: JobMessage = { type: "hash", job, path, chunkSize, blockBytes, ctl: ctlBuf, lib: this.#native() };
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
    const end = (isJoinedByAll: boolean) => {
      if (isJoinedByAll) joinTheRest();
      try {
        fin[0] = fs.statSync(path).size;
      } catch (e) {
        failure ??= e as Error;
        Atomics.store(ctl, 2, 1);
      }
      Atomics.store(ctl, 1, 1);
      wake();
    };
    return {
      result,
      get hashedBytes() {
        return hashedChunks * chunkSize;
      },
      end,
      // The threads that join claim blocks from the same counter: none left, they are done at once.
      joinAll: () => {
        if (!isSettled) joinTheRest();
      },
      finish: () => end(true),
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
    const w = new Worker(threadEntry());
    w.onmessage = (e: MessageEvent<ThreadMessage>) => this.#jobs.get(e.data.job)?.onMessage(e.data);
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

// Replaced at compile time by build.ts (`define`): where the binary holds chunk-thread.ts.
declare const AUTOPOD_CHUNK_THREAD: string | undefined;

/**
 * The threads' code: from the source tree, chunk-thread.ts beside this file;
 * in the binary, the entrypoint build.ts bundled it as (there import.meta.url
 * still names the source file, which need not exist).
 */
function threadEntry(): string | URL {
  return typeof AUTOPOD_CHUNK_THREAD === "string" ? AUTOPOD_CHUNK_THREAD : new URL("./chunk-thread.ts", import.meta.url);
}

/** One thread per CPU, at most 4. */
function defaultThreads(): number {
  return Math.min(4, typeof os.availableParallelism === "function" ? os.availableParallelism() : os.cpus().length);
}
