/** The FleetLock client against a FleetLock test server that follows the protocol document. */
import { afterAll, describe, expect, test } from "bun:test";
import { FleetLockTestServer } from "./_fleetlock-test-server.ts";
import { FleetLock } from "./fleetlock.ts";
import { LockAbortedError } from "./lock.ts";

const server = new FleetLockTestServer(1);
afterAll(() => server.stop());

describe("FleetLock client", () => {
  test("takes a slot, a second host waits until the first releases, then gets it", async () => {
    const a = new FleetLock({ endpoints: [server.url], id: "host-a", group: "workers", pollMs: 20 });
    const b = new FleetLock({ endpoints: [server.url], id: "host-b", group: "workers", pollMs: 20 });
    const ha = await a.acquire();
    expect(ha).toEqual({ kind: "fleetlock", id: "host-a", group: "workers" });
    expect(server.holders("workers")).toEqual(["host-a"]);
    const waits: string[] = [];
    let bHolds = false;
    const pb = b.acquire({ onWait: (w) => waits.push(w) }).then((h) => {
      bHolds = true;
      return h;
    });
    await Bun.sleep(200);
    expect(bHolds).toBe(false);
    expect(waits).toHaveLength(1); // said once, not on every poll
    expect(waits[0]).toMatch(/semaphore currently full, all slots are locked already \(failed_lock_semaphore_full\)/);
    await a.release(ha);
    const hb = await pb;
    expect(server.holders("workers")).toEqual(["host-b"]);
    // Recursive: taking it again while held succeeds; releasing twice too.
    await b.acquire();
    await b.release(hb);
    await b.release(hb);
    expect(server.holders("workers")).toEqual([]);
    expect(server.requests.filter((r) => r.status === 400)).toEqual([]); // every request was well-formed
  });

  test("waiting stops when its signal aborts", async () => {
    const a = new FleetLock({ endpoints: [server.url], id: "host-c", group: "g2", pollMs: 20 });
    const b = new FleetLock({ endpoints: [server.url], id: "host-d", group: "g2", pollMs: 20 });
    const ha = await a.acquire();
    const ac = new AbortController();
    const pb = b.acquire({ signal: ac.signal });
    setTimeout(() => ac.abort(), 100);
    await expect(pb).rejects.toBeInstanceOf(LockAbortedError);
    await a.release(ha);
  });

  test("an unreachable server is said, and the next endpoint is tried", async () => {
    const dead = new FleetLock({ endpoints: ["http://127.0.0.1:1"], id: "x", group: "default", pollMs: 20 });
    const waits: string[] = [];
    const ac = new AbortController();
    const p = dead.acquire({ signal: ac.signal, onWait: (w) => waits.push(w) });
    await Bun.sleep(100);
    ac.abort();
    await expect(p).rejects.toBeInstanceOf(LockAbortedError);
    expect(waits[0]).toMatch(/^no FleetLock server answered \/v1\/pre-reboot: http:\/\/127\.0\.0\.1:1: /);
    await expect(dead.release({ kind: "fleetlock", id: "x", group: "default" })).rejects.toThrow(/did not release the slot: no FleetLock server answered/);
    const second = new FleetLock({ endpoints: ["http://127.0.0.1:1", server.url], id: "y", group: "g3" });
    const h = await second.acquire();
    expect(server.holders("g3")).toEqual(["y"]);
    await second.release(h);
  });

  test("releaseOwn gives back a slot held under this id, with no handle (an agent that died while taking it)", async () => {
    await new FleetLock({ endpoints: [server.url], id: "host-e", group: "g4" }).acquire();
    expect(server.holders("g4")).toEqual(["host-e"]);
    await new FleetLock({ endpoints: [server.url], id: "host-e", group: "g4" }).releaseOwn();
    expect(server.holders("g4")).toEqual([]);
  });

  test("the client refuses a group the protocol does not allow", () => {
    expect(() => new FleetLock({ endpoints: [server.url], id: "x", group: "bad group" })).toThrow(/must match/);
  });
});
