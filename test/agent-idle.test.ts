/**
 * An idle agent sleeps (issue 17): with pods running and nothing happening it
 * spends next to no CPU of its own (no polling timer), and still sees at once
 * a pod that ends, its child or one adopted from an earlier agent. Needs root.
 */
import { afterAll, describe, expect } from "bun:test";
import { readFileSync } from "node:fs";
import { rootTest } from "./_support.ts";
import { TestHost } from "./_pods.ts";

const hosts: TestHost[] = [];
afterAll(async () => {
  for (const h of hosts) await h.dispose();
}, 60_000);

/** The process's own CPU time (utime + stime) in clock ticks (10 ms). */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(f[11]) + Number(f[12]);
}

/** Past the agent's few seconds of sweeps after a pod changed state. */
const SETTLE_MS = 7_000;

/** Wait for the agent's first status collection (apt-get under load takes seconds of its CPU), then settle. */
async function settle(h: TestHost): Promise<void> {
  await h.cli(["status", "--from-agent", "--json"], 120_000);
  await Bun.sleep(SETTLE_MS);
}

describe("idle agent", () => {
  rootTest(
    "with pods running and nothing happening, the agent uses under 0.2% of a CPU",
    async () => {
      const h = await TestHost.start("i");
      hosts.push(h);
      for (const name of ["a", "b", "c", "d"]) await h.run(name, ["sleep", "1000"]);
      await settle(h);
      const pid = h.agent!.pid;
      const before = cpuTicks(pid);
      await Bun.sleep(15_000);
      const used = cpuTicks(pid) - before;
      // 15 s at 0.2% is 30 ms: 3 ticks. A 250 ms waitpid timer alone used about 0.6% (9 ticks) here.
      expect(used).toBeLessThanOrEqual(3);
    },
    120_000,
  );

  rootTest(
    "a pod that ends while the agent sleeps is seen within a second, child or adopted",
    async () => {
      const h = await TestHost.start("j");
      hosts.push(h);
      const child = await h.run("child", ["sleep", "1000"]);
      await Bun.sleep(SETTLE_MS);
      process.kill(child.pid!, "SIGKILL");
      expect((await h.waitForState("child", /^exited/, 1_000)).pid).toBeNull();

      const adopted = await h.run("adopted", ["sleep", "1000"]);
      await h.killAgent("SIGKILL");
      await h.startAgent();
      await Bun.sleep(SETTLE_MS);
      process.kill(adopted.pid!, "SIGKILL");
      expect((await h.waitForState("adopted", /^exited/, 1_000)).pid).toBeNull();
    },
    120_000,
  );
});
