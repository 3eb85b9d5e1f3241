/**
 * The agent's orphan reaper on the real kernel (fuzz finding P2): as a child
 * subreaper, this process adopts a grandchild whose parent exited, exactly as
 * the agent adopts what a failed CRIU restore forked; the reaper takes it once
 * it is a zombie, and never takes the exit status of a child Bun spawned.
 */
import { expect } from "bun:test";
import { linuxPodHost } from "../src/platform/linux/pod-host.ts";
import { setChildSubreaper } from "../src/platform/linux/libc.ts";
import { readProcStat } from "../src/platform/linux/proc.ts";
import { OrphanReaper } from "../src/pods/orphan-reaper.ts";
import { rootTest } from "./_support.ts";

rootTest(
  "an adopted orphan that exits is reaped; a child Bun spawned keeps its exit status",
  async () => {
    setChildSubreaper();
    const reaper = new OrphanReaper(linuxPodHost, { claimedPids: () => new Set() });
    const sweeps = setInterval(() => reaper.sweep(), 1);
    try {
      // The shell starts a grandchild and exits: the grandchild is ours now, and ends 300 ms later.
      const sh = Bun.spawn(["/bin/sh", "-c", "sleep 0.3 & echo $!"], { stdout: "pipe" });
      const orphan = Number((await new Response(sh.stdout).text()).trim());
      expect(await sh.exited).toBe(0);
      // Bun's own children, meanwhile, exit with their own status, which the reaper must leave to Bun.
      const own = await Promise.all([1, 2, 3, 4, 5].map((code) => Bun.spawn(["/bin/sh", "-c", `sleep 0.${code}; exit ${code}`]).exited));
      expect(own).toEqual([1, 2, 3, 4, 5]);
      const deadline = Date.now() + 5000;
      while (readProcStat(orphan) !== null && Date.now() < deadline) await Bun.sleep(50);
      expect(readProcStat(orphan)?.state ?? "reaped").toBe("reaped");
      expect(reaper.reaped).toBeGreaterThanOrEqual(1);
    } finally {
      clearInterval(sweeps);
    }
  },
  20_000,
);
