/**
 * The fleet lock on etcd: a semaphore of N slots per group. Each host puts
 * its key under the group's prefix, attached to a lease it keeps alive; the
 * N keys created first (by etcd's create revision, a total order) hold the
 * slots, the others wait in that order. A holder that dies stops its
 * keepalives, so its lease lapses after the TTL and etcd deletes its key: the
 * fleet is never blocked forever (kured's stale-lock lesson). The TTL is
 * longer than a reboot, so the agent after the reboot takes the same lease
 * up again and releases it.
 */
import { b64, type EtcdGateway, EtcdAnswerError, type EtcdKv, prefixEnd, unb64 } from "./etcd-gateway.ts";
import { type AcquireOptions, LockAbortedError, type LockHandle, type RebootLock, sleepOrAbort } from "./lock.ts";

export interface EtcdLockOptions {
  gateway: EtcdGateway;
  /** This host's name in the lock. */
  id: string;
  group: string;
  slots: number;
  ttlSeconds: number;
  /** How often a waiter looks again (default 1 s). */
  pollMs?: number;
  /** Called when a held lease turns out to have lapsed (keepalives failed longer than the TTL). */
  onLost?: (why: string) => void;
}

export const LOCK_PREFIX = "autopod/update-lock/";

export class EtcdLock implements RebootLock {
  readonly kind = "etcd" as const;
  readonly #o: EtcdLockOptions;
  readonly #keepalives = new Map<string, ReturnType<typeof setInterval>>();

  constructor(o: EtcdLockOptions) {
    this.#o = o;
  }

  get #prefix(): string {
    return `${LOCK_PREFIX}${this.#o.group}/`;
  }

  get #key(): string {
    return this.#prefix + this.#o.id;
  }

  async acquire(opts: AcquireOptions = {}): Promise<LockHandle> {
    const key = this.#key;
    let lease = await this.#grant();
    this.#keepAlive(lease);
    let lastWhy = "";
    try {
      await this.#put(key, lease);
      for (;;) {
        if (opts.signal?.aborted) throw new LockAbortedError("Stopped waiting for the lock");
        const kvs = await this.holders();
        const place = kvs.findIndex((kv) => kv.key === key);
        if (place < 0 || kvs[place]!.lease !== lease) {
          // Our key went (its lease lapsed while etcd could not be reached): queue again, at the back.
          if (!(await this.#isAlive(lease))) {
            this.#stop(lease);
            lease = await this.#grant();
            this.#keepAlive(lease);
          }
          await this.#put(key, lease);
          continue;
        }
        if (place < this.#o.slots) return { kind: "etcd", key, lease };
        const ahead = kvs.slice(0, place).map((kv) => kv.key.slice(this.#prefix.length));
        const why = `all ${this.#o.slots} slot(s) of group "${this.#o.group}" are taken; waiting behind ${ahead.join(", ")}`;
        if (why !== lastWhy) opts.onWait?.(why);
        lastWhy = why;
        await sleepOrAbort(this.#o.pollMs ?? 1000, opts.signal);
      }
    } catch (e) {
      // Leave no key behind: a waiter that gave up must not hold a place in the queue.
      this.#stop(lease);
      await this.#gateway.call("/v3/kv/deleterange", { key: b64(key) }).catch(() => {});
      await this.#gateway.call("/v3/lease/revoke", { ID: lease }).catch(() => {});
      throw e;
    }
  }

  async resume(handle: LockHandle): Promise<boolean> {
    if (handle.kind !== "etcd") return false;
    if (!(await this.#isAlive(handle.lease))) return false;
    const kv = (await this.holders()).find((k) => k.key === handle.key);
    if (!kv || kv.lease !== handle.lease) return false;
    this.#keepAlive(handle.lease);
    return true;
  }

  async release(handle: LockHandle): Promise<void> {
    if (handle.kind !== "etcd") return;
    this.#stop(handle.lease);
    // Delete only our own key on our own lease: a lapsed lease's key may be someone's new one by now.
    await this.#gateway.call("/v3/kv/txn", {
      compare: [{ key: b64(handle.key), target: "LEASE", lease: handle.lease }],
      success: [{ request_delete_range: { key: b64(handle.key) } }],
      failure: [],
    });
    try {
      await this.#gateway.call("/v3/lease/revoke", { ID: handle.lease });
    } catch (e) {
      if (!(e instanceof EtcdAnswerError && e.grpcCode === 5)) throw e; // 5: the lease is gone already
    }
  }

  /** Our key, on whatever lease (the id is this host's alone). */
  async releaseOwn(): Promise<void> {
    await this.#gateway.call("/v3/kv/deleterange", { key: b64(this.#key) });
  }

  close(): void {
    for (const lease of [...this.#keepalives.keys()]) this.#stop(lease);
  }

  /** The group's keys, oldest first: the first `slots` hold the lock. */
  async holders(): Promise<EtcdKv[]> {
    const r = await this.#gateway.call<{ kvs?: EtcdKv[] }>("/v3/kv/range", {
      key: b64(this.#prefix),
      range_end: prefixEnd(this.#prefix),
      sort_order: "ASCEND",
      sort_target: "CREATE",
    });
    return (r.kvs ?? []).map((kv) => ({ ...kv, key: unb64(kv.key) }));
  }

  get #gateway(): EtcdGateway {
    return this.#o.gateway;
  }

  async #grant(): Promise<string> {
    const r = await this.#gateway.call<{ ID?: string }>("/v3/lease/grant", { TTL: this.#o.ttlSeconds });
    if (!r.ID) throw new EtcdAnswerError("etcd granted no lease", 2);
    return r.ID;
  }

  async #put(key: string, lease: string): Promise<void> {
    const value = JSON.stringify({ id: this.#o.id, since: new Date().toISOString() });
    await this.#gateway.call("/v3/kv/put", { key: b64(key), value: b64(value), lease });
  }

  async #isAlive(lease: string): Promise<boolean> {
    const r = await this.#gateway.call<{ TTL?: string }>("/v3/lease/timetolive", { ID: lease });
    return Number(r.TTL ?? -1) > 0;
  }

  #keepAlive(lease: string): void {
    if (this.#keepalives.has(lease)) return;
    const every = Math.max(500, (this.#o.ttlSeconds * 1000) / 3);
    const timer = setInterval(() => {
      this.#gateway
        .call<{ result?: { TTL?: string } }>("/v3/lease/keepalive", { ID: lease })
        .then((r) => {
          if (Number(r.result?.TTL ?? 0) <= 0 && this.#keepalives.has(lease)) {
            this.#stop(lease);
            this.#o.onLost?.(`the etcd lease ${lease} lapsed: keepalives did not reach etcd within ${this.#o.ttlSeconds} s`);
          }
        })
        .catch(() => {
          // the next keepalive tries again; the lease outlives a few misses
        });
    }, every);
    timer.unref?.();
    this.#keepalives.set(lease, timer);
  }

  #stop(lease: string): void {
    const t = this.#keepalives.get(lease);
    if (t !== undefined) clearInterval(t);
    this.#keepalives.delete(lease);
  }
}
