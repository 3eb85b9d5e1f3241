/**
 * The fleet lock on a real etcd (Debian's etcd-server 3.4, three members in
 * their own network namespaces, started here and removed after): one host at
 * a time, a waiter gets the lock when the holder releases it, one member
 * killed does not matter, and a holder SIGKILLed is released by its lease's
 * TTL. Needs root.
 */
import { afterAll, describe, expect } from "bun:test";
import { join } from "node:path";
import { EtcdGateway } from "../src/update/etcd-gateway.ts";
import { EtcdLock } from "../src/update/etcd-lock.ts";
import type { LockHandle } from "../src/update/lock.ts";
import { EtcdTestCluster } from "./_etcd.ts";
import { BUN, REPO, rootTest } from "./_support.ts";

let etcd: EtcdTestCluster | null = null;
const children: ReturnType<typeof Bun.spawn>[] = [];
afterAll(async () => {
  for (const c of children) c.kill("SIGKILL");
  await etcd?.dispose();
}, 60_000);

async function cluster(): Promise<EtcdTestCluster> {
  etcd ??= await EtcdTestCluster.start(3);
  return etcd;
}

function lockFor(c: EtcdTestCluster, id: string, group: string, ttlSeconds = 30, endpoints = c.endpoints): EtcdLock {
  return new EtcdLock({ gateway: new EtcdGateway(endpoints), id, group, slots: 1, ttlSeconds, pollMs: 100 });
}

describe("etcd fleet lock (real etcd, 3 members)", () => {
  rootTest(
    "two holders never hold a 1-slot lock together; the second waits, then gets it",
    async () => {
      const c = await cluster();
      const a = lockFor(c, "host-a", "g1");
      // b talks to another member than a: the order must hold across the cluster.
      const b = lockFor(c, "host-b", "g1", 30, [c.endpoints[2]!, c.endpoints[0]!]);
      let holding = 0;
      let most = 0;
      const hold = async (l: EtcdLock, ms: number) => {
        const h = await l.acquire();
        holding++;
        most = Math.max(most, holding);
        await Bun.sleep(ms);
        holding--;
        await l.release(h);
      };
      for (let round = 0; round < 3; round++) await Promise.all([hold(a, 300), hold(b, 300)]);
      expect(most).toBe(1);

      const ha = await a.acquire();
      const waits: string[] = [];
      let hb: LockHandle | null = null;
      const pb = b.acquire({ onWait: (w) => waits.push(w) }).then((h) => (hb = h));
      await Bun.sleep(1500);
      expect(hb).toBeNull();
      expect(waits[0]).toMatch(/all 1 slot\(s\) of group "g1" are taken; waiting behind host-a/);
      expect((await a.holders()).map((k) => k.key)).toEqual(["autopod/update-lock/g1/host-a", "autopod/update-lock/g1/host-b"]);
      await a.release(ha);
      await pb;
      expect(hb).not.toBeNull();
      await b.release(hb!);
      expect(await a.holders()).toEqual([]);
      // An agent that died while taking the lock: the next one, with no handle, removes its own key.
      await a.acquire();
      const again = lockFor(c, "host-a", "g1");
      await again.releaseOwn();
      expect(await a.holders()).toEqual([]);
      a.close();
      b.close();
    },
    120_000,
  );

  rootTest(
    "with one member killed the lock still works (the dead member listed first)",
    async () => {
      const c = await cluster();
      await c.kill(0);
      const a = lockFor(c, "host-a", "g2");
      const b = lockFor(c, "host-b", "g2");
      const ha = await a.acquire();
      let got = false;
      const pb = b.acquire().then((h) => {
        got = true;
        return h;
      });
      await Bun.sleep(1000);
      expect(got).toBe(false);
      await a.release(ha);
      await b.release(await pb);
      a.close();
      b.close();
    },
    120_000,
  );

  rootTest(
    "a holder SIGKILLed is released by its lease's TTL",
    async () => {
      const c = await cluster();
      const ttl = 4;
      const live = c.members.filter((m) => m.proc).map((m) => `http://${m.ip}:2379`);
      const child = Bun.spawn([BUN, join(REPO, "test/_etcd-holder.ts"), live.join(","), "doomed", "g3", String(ttl)], { stdout: "pipe", stderr: "inherit" });
      children.push(child);
      const reader = child.stdout.getReader();
      const first = await Promise.race([reader.read(), Bun.sleep(30_000).then(() => null)]);
      expect(new TextDecoder().decode(first?.value ?? new Uint8Array())).toBe("held\n");
      const b = lockFor(c, "host-b", "g3", 30, live);
      let gotAt = 0;
      const pb = b.acquire().then((h) => {
        gotAt = Date.now();
        return h;
      });
      // The holder keeps its lease alive: waiting well past the TTL does not free it.
      await Bun.sleep(ttl * 2000);
      expect(gotAt).toBe(0);
      const killedAt = Date.now();
      child.kill("SIGKILL");
      await child.exited;
      const h = await Promise.race([pb, Bun.sleep(120_000).then(() => null)]);
      expect(h).not.toBeNull();
      // Not before the lease could lapse (its last keepalive left up to a TTL).
      expect(gotAt - killedAt).toBeGreaterThan(500);
      await b.release(h!);
      b.close();
    },
    180_000,
  );
});
