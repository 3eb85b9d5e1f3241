/**
 * A pod whose command ends at once keeps its exit status. The pod's init is
 * unshare's child until the agent kills the launcher; a command that ended
 * before that was reaped by unshare and its status lost ("exited(?)", seen as
 * a flaky pods-basics test in a CI check). The failpoint holds the launcher
 * alive for 600 ms after the init reported its pid, so without pod-init
 * waiting for it the status is lost every time. (With the small static init,
 * src/native/pod-init.c, the launcher is not unshare: it never waits for the
 * pod's pid 1 and exits by itself, and pid 1 still waits for it to be gone.)
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { TestHost } from "./_pods.ts";
import { isRoot, rootTest } from "./_support.ts";

let host: TestHost;

beforeAll(async () => {
  if (!isRoot) return;
  host = await TestHost.start("exs");
  await host.killAgent("SIGTERM");
  await host.startAgent(undefined, {}, ["--failpoints", "pods.pid-reported=sleep(600)"]);
}, 120_000);

afterAll(async () => {
  await host?.dispose();
});

rootTest(
  "a command that ends at once, while its launcher still lives, keeps its exit status",
  async () => {
    await host.run("quick", ["sh", "-c", "exit 7"]);
    const r = await host.waitForState("quick", /^exited/);
    expect(r.state).toBe("exited(7)");
    await host.run("ok", ["true"]);
    expect((await host.waitForState("ok", /^exited/)).state).toBe("exited(0)");
  },
  60_000,
);
