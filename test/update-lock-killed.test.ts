/**
 * An agent SIGKILLed mid-cycle while it holds the etcd lock (a real etcd,
 * three members in namespaces of their own, one slot): its lease lapses
 * after the TTL, and the other host's cycle, waiting behind it, then takes
 * the lock and runs. The killed agent, started again, takes its cycle up
 * from its journal: it died while updating, so it does not reboot; it brings
 * its pod home (suspended to disk, as no peer can take it: its real
 * evacuation) with its memory, releases what it held, and the pod runs on
 * that one host only. Needs root.
 */
import { afterAll, describe, expect } from "bun:test";
import type { UpdateEvent } from "../src/update/events.ts";
import { EtcdTestCluster } from "./_etcd.ts";
import { rootTest } from "./_support.ts";
import { UpdateTestHost } from "./_update-host.ts";

let etcd: EtcdTestCluster | null = null;
const hosts: UpdateTestHost[] = [];

afterAll(async () => {
  for (const h of hosts) await h.dispose().catch(() => {});
  await etcd?.dispose();
}, 180_000);

const TTL = 5;

function timeOf(events: UpdateEvent[], kind: string): number {
  const e = events.find((x) => x.kind === kind);
  if (!e) throw new Error(`No "${kind}" event: ${events.map((x) => `${x.kind}: ${x.msg}`).join("\n")}`);
  return Date.parse(e.time);
}

describe("a lock holder killed mid-cycle (real etcd)", () => {
  rootTest(
    "its lease lapses and the other host's cycle runs; restarted, it undoes its cycle from its journal, its pod home on this host alone",
    async () => {
      etcd = await EtcdTestCluster.start(3);
      const lock = ["[policy.lock]", 'kind = "etcd"', `endpoints = ${JSON.stringify(etcd.endpoints)}`, 'group = "killed"', "slots = 1", `ttl = ${TTL}`];
      // The doomed host: its real evacuation (alone: the pod is suspended to disk), an update that takes a while.
      const ka = await UpdateTestHost.start("ka", {
        policy: ["retry_seconds = 3600", ...lock, 'id = "ka"'],
        updateSeconds: 15,
        fakeEvacuator: false,
      });
      hosts.push(ka);
      const kb = await UpdateTestHost.start("kb", { policy: [...lock, 'id = "kb"'] });
      hosts.push(kb);
      await etcd.connect(ka.host.netns, 0);
      await etcd.connect(kb.host.netns, 1);

      await ka.host.run("counter", ["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i >> /count; usleep 10000; done"]);
      await Bun.sleep(500);
      await ka.needReboot();
      await ka.waitForEvent("update.started", 120_000);
      expect((await ka.host.pod("counter")).state).toBe("checkpointed");
      // kb needs its reboot too, and waits behind ka.
      await kb.needReboot();
      const waiting = await kb.waitForEvent("lock.waiting", 60_000);
      const deadline = Date.now() + 30_000;
      while (!(await kb.events()).some((e) => e.kind === "lock.waiting" && e.msg.includes("waiting behind ka"))) {
        if (Date.now() > deadline) throw new Error(`kb does not wait behind ka: ${waiting.map((e) => e.msg).join("\n")}`);
        await Bun.sleep(250);
      }

      // Killed mid-update, holding the lock: no release, no keepalive from now on.
      await ka.host.killAgent("SIGKILL");
      const killedAt = Date.now();
      const b = await kb.waitForEvent("cycle.finished", 240_000);
      expect(b.map((e) => e.kind)).not.toContain("cycle.failed");
      const takenAt = timeOf(b, "lock.taken");
      // Taken once the lease lapsed: not at once (ka's last keepalive left it most of a TTL).
      expect(takenAt - killedAt).toBeGreaterThan(1000);
      expect(b.some((e) => e.kind === "reboot.started")).toBe(true);

      // ka's agent starts again (same boot): the journal says it died while updating.
      await ka.host.startAgent();
      const a = await ka.waitForEvent("return.done", 120_000);
      const failed = a.find((e) => e.kind === "cycle.failed")!;
      expect(failed.msg).toContain('The agent stopped during "updating"');
      expect(a.some((e) => e.kind === "reboot.started")).toBe(false);
      expect(a.find((e) => e.kind === "return.done")!.msg).toBe("Brought 1 of 1 pod(s) home");
      // Its pod runs here, once, with its memory: the counter goes on from where it was, not from 1.
      const pods = await ka.host.pods();
      expect(pods.filter((p) => p.name === "counter").map((p) => p.state)).toEqual(["running"]);
      expect((await kb.host.pods()).filter((p) => p.name === "counter")).toEqual([]);
      // Lines 1..n, each once, in order: a counter started afresh would write 1 again.
      const lines = (await ka.host.ok(["exec", "counter", "cat", "/count"])).split("\n").map(Number);
      expect(lines).toEqual(lines.map((_, i) => i + 1));
      expect(lines.length).toBeGreaterThan(20);
      // Its journal is gone; nothing of the lock is left in etcd (its key lapsed with its lease; kb released its own).
      // Its own release finds its key gone with its lease, and says it released: it holds nothing.
      expect(a.map((e) => e.kind)).toContain("lock.released");
      expect(
        ((await fetch("http://autopod/v1/update", { unix: ka.host.socket } as RequestInit).then((r) => r.json())) as { update: { cycle: unknown } }).update
          .cycle,
      ).toBeNull();
      const keys = await fetch(`${etcd.endpoints[0]}/v3/kv/range`, {
        method: "POST",
        body: JSON.stringify({ key: Buffer.from("autopod/").toString("base64"), range_end: Buffer.from("autopod0").toString("base64") }),
      }).then((r) => r.json() as Promise<{ kvs?: unknown[] }>);
      expect(keys.kvs ?? []).toEqual([]);
    },
    400_000,
  );
});
