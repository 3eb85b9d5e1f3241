/**
 * The fleet lock: at most N hosts of a group update at once. The cycle takes
 * it before evacuating and releases it after the reboot (or when a failed
 * cycle is safe to end). Implementations: etcd (etcd-lock.ts), FleetLock
 * (fleetlock.ts), and none (one host).
 */
import type { LockHandle } from "./journal.ts";

export type { LockHandle } from "./journal.ts";

export interface AcquireOptions {
  /** Stop waiting (the window closed, the agent stops): acquire rejects with LockAbortedError. */
  signal?: AbortSignal;
  /** Called while waiting, when the reason to wait changes (who holds it, a service that does not answer). */
  onWait?: (why: string) => void;
}

export interface RebootLock {
  readonly kind: LockHandle["kind"];
  /** Wait for a slot; resolves with what it takes to release it (kept in the journal across the reboot). */
  acquire(opts?: AcquireOptions): Promise<LockHandle>;
  /** After a restart: take up a lock held before it; false when it was lost meanwhile (an etcd lease that lapsed). */
  resume(handle: LockHandle): Promise<boolean>;
  /** Give the slot back; succeeds when it was not held. Throws when the lock service cannot be reached. */
  release(handle: LockHandle): Promise<void>;
  /**
   * Release whatever this host may hold or wait for under its own id, with no
   * handle: for a cycle interrupted while it took the lock (the server may
   * have granted it before the journal recorded it; a FleetLock slot has no TTL).
   */
  releaseOwn(): Promise<void>;
  /** Stop any background work (keepalives) without releasing. */
  close(): void;
}

export class LockServiceError extends Error {
  override name = "LockServiceError";
}

export class LockAbortedError extends Error {
  override name = "LockAbortedError";
}

/** For a single host: always free. */
export class NoLock implements RebootLock {
  readonly kind = "none" as const;
  async acquire(): Promise<LockHandle> {
    return { kind: "none" };
  }
  async resume(): Promise<boolean> {
    return true;
  }
  async release(): Promise<void> {}
  async releaseOwn(): Promise<void> {}
  close(): void {}
}

/** Sleep `ms`, or less when the signal aborts (then reject). */
export function sleepOrAbort(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new LockAbortedError("Stopped waiting for the lock"));
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(new LockAbortedError("Stopped waiting for the lock"));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
