/**
 * The update cycle with the agent's real evacuation on a host alone (no
 * cluster, no peer): the pods are suspended to local disk (checkpointed), the
 * host updates and "reboots" (its agent stops and starts again), and the
 * agent after the reboot restores them, their memory state intact: a pod
 * counting in a shell variable into a file goes on from where it was, with
 * no number lost or repeated. Needs root and CRIU.
 */
import { afterAll, describe, expect } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { rootTest } from "./_support.ts";
import { UpdateTestHost } from "./_update-host.ts";

let h: UpdateTestHost | null = null;
afterAll(async () => {
  await h?.dispose();
}, 120_000);

function expectCountWithoutGap(text: string): number {
  const lines = text.trim().split("\n").map(Number);
  lines.forEach((n, i) => {
    if (n !== i + 1) throw new Error(`/count line ${i + 1} is ${n}`);
  });
  return lines.length;
}

describe("the update cycle on a host alone (suspend to disk)", () => {
  rootTest(
    "no peer: the pods are suspended to disk, the host updates and 'reboots', and they come back with their state",
    async () => {
      h = await UpdateTestHost.start("us", { fakeEvacuator: false });
      const host = h.host;
      await host.run("counter", ["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i >> /count; usleep 10000; done"]);
      await Bun.sleep(1000);
      const before = expectCountWithoutGap(await host.ok(["exec", "counter", "cat", "/count"]));
      await h.needReboot();
      const all = await h.waitForEvent("cycle.finished", 240_000);
      const kinds = all.map((e) => e.kind);
      expect(kinds).not.toContain("cycle.failed");
      const evacuated = all.find((e) => e.kind === "evacuation.done")!.fields!.pods as { pod: string; outcome: string }[];
      expect(evacuated).toEqual([expect.objectContaining({ pod: "counter", outcome: "suspended" })]);
      const back = all.find((e) => e.kind === "return.done")!.fields!.pods as { pod: string; outcome: string }[];
      expect(back).toEqual([expect.objectContaining({ pod: "counter", outcome: "restored" })]);
      expect(readFileSync(join(h.dir, "reboots.log"), "utf8").trim().split("\n")).toHaveLength(1);
      expect((await host.pod("counter")).state).toBe("running");
      await Bun.sleep(500);
      expect(expectCountWithoutGap(await host.ok(["exec", "counter", "cat", "/count"]))).toBeGreaterThan(before);
    },
    300_000,
  );
});
