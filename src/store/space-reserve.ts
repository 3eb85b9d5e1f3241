/**
 * A few MiB the store keeps on its file system for the way out of a full disk:
 * `image rm` and `image gc` must be able to write (sqlite's WAL, a compacted
 * pack) when the disk is 100% full, which is exactly when they are needed.
 * The reserve is a file of real zeros; an operation that fails for lack of
 * space releases it and runs again, and it is taken back once there is room.
 */
import { closeSync, fsyncSync, openSync, rmSync, statfsSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";

export const RESERVE_BYTES = 16 << 20;
const FILE = "reserve";

/** The error says the disk (or the database on it) is full. */
export function isOutOfSpace(e: unknown): boolean {
  const x = e as { code?: unknown; errno?: unknown; message?: unknown } | null;
  if (x === null || typeof x !== "object") return false;
  if (x.code === "ENOSPC" || x.code === "SQLITE_FULL" || x.code === "EDQUOT") return true;
  return typeof x.message === "string" && /database or disk is full|No space left on device/i.test(x.message);
}

export class SpaceReserve {
  readonly path: string;
  readonly bytes: number;

  constructor(dir: string, bytes = RESERVE_BYTES) {
    this.path = join(dir, FILE);
    this.bytes = bytes;
  }

  /** Whether the reserve is in place, whole. */
  get isHeld(): boolean {
    try {
      return statSync(this.path).size >= this.bytes;
    } catch {
      return false;
    }
  }

  /** Take the reserve when there is room for it and a margin as large again; true when held. */
  take(): boolean {
    if (this.isHeld) return true;
    try {
      const st = statfsSync(join(this.path, ".."));
      if (st.bavail * st.bsize < this.bytes * 2) return false;
      const fd = openSync(this.path, "w", 0o600);
      try {
        const zeros = new Uint8Array(1 << 20);
        for (let at = 0; at < this.bytes; at += zeros.byteLength) writeSync(fd, zeros, 0, Math.min(zeros.byteLength, this.bytes - at));
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      return true;
    } catch {
      rmSync(this.path, { force: true });
      return false;
    }
  }

  /** Give the reserve back to the file system. True when there was one to give. */
  release(): boolean {
    const had = this.isHeld;
    rmSync(this.path, { force: true });
    return had;
  }

  /**
   * Run `fn`; when it fails for lack of space and a reserve is held, release
   * the reserve and run it once more. `fn` must be safe to run again after a
   * failure (each step its own transaction). The reserve is taken back after.
   */
  withSpace<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (!isOutOfSpace(e) || !this.release()) throw e;
      return fn();
    } finally {
      this.take();
    }
  }
}
