/**
 * Processes started with `autopod exec` live outside the pod's process tree,
 * so CRIU cannot put them in the image: a checkpoint refuses, naming them,
 * unless --kill-exec says to kill them.
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { TestHost } from "./_pods.ts";
import { autopodArgv, isRoot, rootTest } from "./_support.ts";

const T = 120_000;
let host: TestHost;
beforeAll(async () => {
  if (isRoot) host = await TestHost.start("e");
}, 60_000);
afterAll(async () => {
  await host?.dispose();
}, 120_000);

rootTest(
  "checkpoint refuses while an exec session runs, naming it, and --kill-exec kills it and goes on",
  async () => {
    await host.run("busy", ["sleep", "1000"]);
    const session = Bun.spawn([...autopodArgv(), "exec", "busy", "--", "sh", "-c", "echo started; exec sleep 777"], {
      env: { ...process.env, ...host.env },
      stdout: "pipe",
      stderr: "pipe",
    });
    await session.stdout.getReader().read(); // "started": the session runs
    await Bun.sleep(200);
    for (const flags of [[], ["--leave-running"]]) {
      const r = await host.cli(["checkpoint", "busy", ...flags], T);
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toMatch(/Cannot checkpoint pod "busy": it runs 1 process started with autopod exec, which the image cannot hold: pid \d+ \(sleep 777\)/);
      expect(r.stderr).toContain("--kill-exec");
    }
    // Nothing happened: the pod and the session run, no image was made.
    expect((await host.pod("busy")).state).toBe("running");
    expect(session.exitCode).toBeNull();
    expect(await host.ok(["images", "--json"])).toBe("[]");

    const id = await host.ok(["checkpoint", "busy", "--kill-exec"], T);
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    expect(await session.exited).not.toBe(0);
    expect((await host.pod("busy")).state).toBe("checkpointed");
    await host.ok(["restore", id.slice(0, 12)], T);
    expect((await host.pod("busy")).state).toBe("running");
  },
  T,
);
