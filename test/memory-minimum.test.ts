/**
 * The smallest memory limit run accepts is one a pod can start, checkpoint and
 * restore with (starting takes about 5 MiB in the pod's cgroup); below it,
 * run says so before anything is made.
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { TestHost, testRootfs } from "./_pods.ts";
import { isRoot, rootTest } from "./_support.ts";

const T = 120_000;
let host: TestHost;
beforeAll(async () => {
  if (isRoot) host = await TestHost.start("m");
}, 60_000);
afterAll(async () => {
  await host?.dispose();
}, 120_000);

rootTest(
  "--memory below the minimum is refused with the minimum; the minimum runs, checkpoints and restores",
  async () => {
    for (const small of ["4m", "7m"]) {
      const r = await host.cli(["run", "tiny", "--rootfs", testRootfs(), "--memory", small, "--", "sleep", "1000"]);
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toMatch(/Memory limit \d MiB is too small: at least 8 MiB/);
    }
    expect(await host.pods()).toEqual([]);
    await host.run("tiny", ["sleep", "1000"], ["--memory", "8m"]);
    const id = await host.ok(["checkpoint", "tiny"], T);
    await host.ok(["restore", id.slice(0, 12)], T);
    expect((await host.pod("tiny")).state).toBe("running");
  },
  T,
);
