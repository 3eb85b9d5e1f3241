/** What ChunkWorkers (chunk-workers.ts) and its threads (chunk-thread.ts) say to each other. */

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

/**
 * A job for a thread. `ctl` is shared control: for hash, Int32 [next block,
 * end known, stop, wake] then the end as a Float64 at byte 16; for copy,
 * Int32 [next run, -, stop]; for write-behind, Int32 [writer done].
 * `lib`: the native SHA-256 library to dlopen (sha256x16.ts), or null.
 */
export type JobMessage =
  | { type: "hash"; job: number; path: string; chunkSize: number; blockBytes: number; ctl: SharedArrayBuffer; lib: string | null }
  | {
      type: "copy";
      job: number;
      ctl: SharedArrayBuffer;
      /** The file's concatenated chunk hashes. */
      expected: SharedArrayBuffer;
      dest: string;
      chunkSize: number;
      packs: string[];
      runs: CopyRun[];
      lib: string | null;
    }
  | { type: "sync"; job: number; path: string }
  /** Which SHA-256 would this thread run with `lib`: answered as done, with its hasher. */
  | { type: "hasher"; job: number; lib: string | null }
  | { type: "write-behind"; job: number; path: string; ctl: SharedArrayBuffer }
  /**
   * Check chunks that arrived with claimed hashes: `data` holds, for each,
   * its 32-byte claimed hash then its `lengths[i]` bytes. Answered with the
   * indexes that do not match, and `data` handed back.
   */
  | { type: "verify"; job: number; data: ArrayBuffer; lengths: Uint32Array };

/** A thread's answer: a hashed block, the bytes written ahead, the end of its part of a job, a failure, or a bad chunk. */
export type ThreadMessage =
  | { job: number; block: number; hashes: Uint8Array; zero: Uint8Array }
  | { job: number; submitted: number }
  | { job: number; done: true; hasher?: "native" | "bun" }
  | { job: number; error: string }
  | { job: number; bad: number; reason: string }
  | { job: number; mismatched: number[]; data: ArrayBuffer };
