/**
 * Two restores of one image on two hosts at the same moment, in the routed
 * pod network (one address space across the cluster): both pass the first
 * address check, as neither pod is live yet (a failpoint holds each restore
 * there a moment, so they always meet); the recheck once each pod shows as
 * arriving lets at most one of them go ahead, and the image stays whole.
 */
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { TestCluster } from "./_cluster.ts";
import type { TestHost } from "./_pods.ts";
import { rootTest } from "./_support.ts";

const T = 180_000;

describe("concurrent restores of one address", () => {
  let lan: TestCluster;
  let a: TestHost;
  let b: TestHost;

  beforeAll(async () => {
    if (process.getuid?.() !== 0) return;
    lan = await TestCluster.start("rr", ["a", "b"], { routed: true });
    [a, b] = lan.hosts as [TestHost, TestHost];
    await lan.formCluster("race", ["a", "b"]);
    // Each restore waits a moment between its address check and its pod showing to the peers: the window two restores race in.
    for (const h of [a, b]) {
      await h.killAgent("SIGTERM");
      await h.startAgent(undefined, {}, ["--failpoints", "pods.address-checked=sleep(400)"]);
    }
  }, 120_000);
  afterAll(async () => {
    await lan?.dispose();
  }, 120_000);

  rootTest(
    "a pod restored on two hosts at once runs on at most one of them; the other backs off, and can restore once it is free",
    async () => {
      const pod = await a.run("twin", ["sleep", "100000"]);
      expect(pod.address).toMatch(/\/32$/);
      let id = await a.ok(["checkpoint", "twin"]);
      await a.ok(["image", "push", id, "--to", "b"]);
      // Neither host has the pod now, only its image: each restore makes it new.
      await a.ok(["rm", "twin"]);
      const name = (h: TestHost) => (h === a ? "a" : "b");
      for (let round = 0; round < 3; round++) {
        const results = await Promise.all([a.cli(["restore", id]), b.cli(["restore", id])]);
        let ran = [a, b].filter((_, i) => results[i]!.exitCode === 0);
        console.log(`round ${round}: restored on ${ran.map(name).join(" and ") || "neither (both backed off)"}`);
        expect(ran.length).toBeLessThanOrEqual(1);
        for (const r of results) if (r.exitCode !== 0) expect(r.stderr).toMatch(/Address [0-9.]+ (of|for) pod "twin" is (being taken|in use) on host "[ab]"/);
        for (const h of [a, b]) {
          // The one that backed off kept nothing of it; the image is whole on both.
          if (!ran.includes(h)) expect((await h.pods()).map((p) => p.name)).not.toContain("twin");
          expect(JSON.parse(await h.ok(["images", "--json"])).map((i: { id: string }) => i.id)).toContain(id);
        }
        // Both backed off: either can have it now.
        if (ran.length === 0) {
          await a.ok(["restore", id]);
          ran = [a];
        }
        const h = ran[0]!;
        expect((await h.pod("twin")).state).toBe("running");
        // Back to an image on both hosts and no pod, for the next round.
        id = await h.ok(["checkpoint", "twin"]);
        await h.ok(["image", "push", id, "--to", h === a ? "b" : "a"]);
        await h.ok(["rm", "twin"]);
      }
    },
    T,
  );
});
