/**
 * An idle agent sleeps (issue 17) and still sees at once a pod that ends, its
 * child or one adopted from an earlier agent. Needs root. How little CPU the
 * idle agent uses is a figure, measured by bench/idle.ts, not asserted here:
 * a CPU-time bound failed on a loaded CI machine.
 */
import { afterAll, describe, expect } from "bun:test";
import { rootTest } from "./_support.ts";
import { TestHost } from "./_pods.ts";

const hosts: TestHost[] = [];
afterAll(async () => {
  for (const h of hosts) await h.dispose();
}, 60_000);

/** Past the agent's few seconds of sweeps after a pod changed state. */
const SETTLE_MS = 7_000;

describe("idle agent", () => {
  rootTest(
    "a pod that ends while the agent sleeps is seen within 3 s (no sweep timer), child or adopted",
    async () => {
      const h = await TestHost.start("j");
      hosts.push(h);
      const child = await h.run("child", ["sleep", "1000"]);
      await Bun.sleep(SETTLE_MS);
      process.kill(child.pid!, "SIGKILL");
      expect((await h.waitForState("child", /^exited/, 3_000)).pid).toBeNull();

      const adopted = await h.run("adopted", ["sleep", "1000"]);
      await h.killAgent("SIGKILL");
      await h.startAgent();
      await Bun.sleep(SETTLE_MS);
      process.kill(adopted.pid!, "SIGKILL");
      expect((await h.waitForState("adopted", /^exited/, 3_000)).pid).toBeNull();
    },
    120_000,
  );
});
