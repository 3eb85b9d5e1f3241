/**
 * One host at a time: two agents whose hosts both need a reboot, one real
 * etcd (three members, in namespaces of their own) as the fleet lock with one
 * slot. Both cycles run through, and never together: the second waits for
 * the lock (and says so), and runs when the first has released it after its
 * "reboot". Evacuation is the agents' test-only fake. Needs root.
 */
import { afterAll, describe, expect } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { UpdateEvent } from "../src/update/events.ts";
import { EtcdTestCluster } from "./_etcd.ts";
import { rootTest } from "./_support.ts";
import { UpdateTestHost } from "./_update-host.ts";

let etcd: EtcdTestCluster | null = null;
const hosts: UpdateTestHost[] = [];
const dir = mkdtempSync(join(tmpdir(), "autopod-one-at-a-time-"));

afterAll(async () => {
  for (const h of hosts) await h.dispose().catch(() => {});
  await etcd?.dispose();
  rmSync(dir, { recursive: true, force: true });
}, 180_000);

/** [taken, released] of the lock in a host's events (event times, ms). */
function lockSpan(events: UpdateEvent[]): [number, number] {
  const taken = events.find((e) => e.kind === "lock.taken");
  const released = events.find((e) => e.kind === "lock.released");
  if (!taken || !released) throw new Error(`No lock.taken/lock.released: ${events.map((e) => e.kind).join(", ")}`);
  return [Date.parse(taken.time), Date.parse(released.time)];
}

describe("one host at a time (real etcd)", () => {
  rootTest(
    "two hosts that both need a reboot never hold the lock together; the second waits, then runs",
    async () => {
      etcd = await EtcdTestCluster.start(3);
      const log = join(dir, "updates.log");
      const policy = ["[policy.lock]", 'kind = "etcd"', `endpoints = ${JSON.stringify(etcd.endpoints)}`, 'group = "test"', "slots = 1", "ttl = 30"];
      for (const [i, tag] of ["ua", "ub"].entries()) {
        const h = await UpdateTestHost.start(tag, { policy: [...policy, `id = "${tag}"`], updateSeconds: 2, log });
        hosts.push(h);
        await etcd.connect(h.host.netns, i);
      }
      await Promise.all(hosts.map((h) => h.host.run("idle", ["sleep", "100000"])));
      await Promise.all(hosts.map((h) => h.needReboot()));

      const [a, b] = await Promise.all(hosts.map((h) => h.waitForEvent("cycle.finished", 240_000)));
      for (const ev of [a!, b!]) expect(ev.map((e) => e.kind)).not.toContain("cycle.failed");
      const [sa, sb] = [lockSpan(a!), lockSpan(b!)];
      // Never together: one released before the other took it.
      expect(sa[1] <= sb[0] || sb[1] <= sa[0]).toBe(true);
      // The second said it waited, and for whom.
      const [first, second] = sa[0] < sb[0] ? [a!, b!] : [b!, a!];
      const firstId = sa[0] < sb[0] ? "ua" : "ub";
      expect(second.some((e) => e.kind === "lock.waiting" && e.msg.includes(`waiting behind ${firstId}`))).toBe(true);
      expect(first.some((e) => e.kind === "reboot.started")).toBe(true);
      // The updates ran one after the other.
      const lines = readFileSync(log, "utf8").trim().split("\n");
      expect(lines.map((l) => l.split(" ").slice(0, 2).join(" "))).toEqual([
        `start ${firstId}`,
        `end ${firstId}`,
        `start ${firstId === "ua" ? "ub" : "ua"}`,
        `end ${firstId === "ua" ? "ub" : "ua"}`,
      ]);
      // Nothing of the lock is left in etcd.
      const keys = await fetch(`${etcd.endpoints[0]}/v3/kv/range`, {
        method: "POST",
        body: JSON.stringify({ key: Buffer.from("autopod/").toString("base64"), range_end: Buffer.from("autopod0").toString("base64") }),
      }).then((r) => r.json() as Promise<{ kvs?: unknown[] }>);
      expect(keys.kvs ?? []).toEqual([]);
    },
    300_000,
  );
});
