/**
 * The fleet lock through a FleetLock server (Zincati's protocol; airlock
 * serves it on etcd): POST {base}/v1/pre-reboot to take a slot and
 * {base}/v1/steady-state to give it back, with the header
 * `fleet-lock-protocol: true` and the body {"client_params":{"id","group"}}.
 * Any 2xx is success; an error is {"kind","value"}. Both operations are
 * recursive on the server, so retrying is always safe.
 */
import { type AcquireOptions, LockAbortedError, type LockHandle, type RebootLock, LockServiceError, sleepOrAbort } from "./lock.ts";

export interface FleetLockOptions {
  /** Base URLs, tried in turn. */
  endpoints: string[];
  id: string;
  group: string;
  /** How often a waiter asks again (default 5 s). */
  pollMs?: number;
  timeoutMs?: number;
}

export class FleetLock implements RebootLock {
  readonly kind = "fleetlock" as const;
  readonly #o: FleetLockOptions;

  constructor(o: FleetLockOptions) {
    if (o.endpoints.length === 0) throw new LockServiceError("The FleetLock lock needs at least one endpoint");
    if (!/^[a-zA-Z0-9.-]+$/.test(o.group)) throw new LockServiceError(`FleetLock group "${o.group}" must match ^[a-zA-Z0-9.-]+$`);
    if (o.id === "") throw new LockServiceError("The FleetLock client id must not be empty");
    this.#o = o;
  }

  async acquire(opts: AcquireOptions = {}): Promise<LockHandle> {
    let lastWhy = "";
    for (;;) {
      if (opts.signal?.aborted) throw new LockAbortedError("Stopped waiting for the lock");
      const why = await this.#post("/v1/pre-reboot");
      if (why === null) return { kind: "fleetlock", id: this.#o.id, group: this.#o.group };
      if (why !== lastWhy) opts.onWait?.(why);
      lastWhy = why;
      await sleepOrAbort(this.#o.pollMs ?? 5000, opts.signal);
    }
  }

  /** The server keeps the slot until steady-state: nothing to take up. */
  async resume(handle: LockHandle): Promise<boolean> {
    return handle.kind === "fleetlock";
  }

  async release(handle: LockHandle): Promise<void> {
    if (handle.kind !== "fleetlock") return;
    const why = await this.#post("/v1/steady-state");
    if (why !== null) throw new LockServiceError(`The FleetLock server did not release the slot: ${why}`);
  }

  async releaseOwn(): Promise<void> {
    await this.release({ kind: "fleetlock", id: this.#o.id, group: this.#o.group });
  }

  close(): void {}

  /** One operation: null on success, else why not (the server's error, or that none answered). */
  async #post(path: string): Promise<string | null> {
    const body = JSON.stringify({ client_params: { id: this.#o.id, group: this.#o.group } });
    const failures: string[] = [];
    for (const base of this.#o.endpoints) {
      let res: Response;
      try {
        res = await fetch(base.replace(/\/+$/, "") + path, {
          method: "POST",
          headers: { "fleet-lock-protocol": "true", "content-type": "application/json" },
          body,
          signal: AbortSignal.timeout(this.#o.timeoutMs ?? 5000),
        });
      } catch (e) {
        failures.push(`${base}: ${(e as Error).message}`);
        continue;
      }
      if (res.status >= 200 && res.status < 300) return null;
      const text = await res.text().catch(() => "");
      let detail = `HTTP ${res.status}`;
      try {
        const e = JSON.parse(text) as { kind?: unknown; value?: unknown };
        if (typeof e.kind === "string" && typeof e.value === "string") detail = `${e.value} (${e.kind})`;
      } catch {
        // not the protocol's error object: the status says enough
      }
      return `the FleetLock server at ${base} refused ${path}: ${detail}`;
    }
    return `no FleetLock server answered ${path}: ${failures.join("; ")}`;
  }
}
