/**
 * A pod continued after `criu dump --leave-stopped` (a --leave-running
 * checkpoint; also an undone checkpoint or an aborted migration) keeps its TCP
 * connections working: CRIU leaves them in repair mode, and the agent takes
 * them out before the tasks go on (src/platform/linux/tcp-repair.ts).
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { join } from "node:path";
import { TestHost } from "./_pods.ts";
import { BUN, isRoot, REPO, rootTest } from "./_support.ts";

let host: TestHost;

beforeAll(async () => {
  if (!isRoot) return;
  host = await TestHost.start("tr");
}, 60_000);
afterAll(async () => {
  await host?.dispose();
}, 60_000);

rootTest(
  "a --leave-running checkpoint keeps a connected client's echoes flowing",
  async () => {
    const pod = await host.run("echo", ["nc", "-ll", "-p", "7000", "-e", "cat"]);
    const ip = pod.address.split("/")[0]!;
    await Bun.sleep(300);
    const client = Bun.spawn(["nsenter", `--net=/run/netns/${host.netns}`, "--", BUN, join(REPO, "test/fixtures/tcp-client.ts"), ip, "7000", "1"], {
      stdout: "pipe",
      stderr: "pipe",
    });
    await Bun.sleep(700);
    await host.ok(["checkpoint", "echo", "--leave-running"]);
    await host.ok(["checkpoint", "echo", "--leave-running"]);
    await Bun.sleep(2000);
    client.kill("SIGTERM");
    const r = JSON.parse((await new Response(client.stdout).text()).trim()) as { sent: number; received: number; errors: string[] };
    expect(r.errors).toEqual([]);
    expect(r.sent).toBeGreaterThan(500);
    expect(r.received).toBe(r.sent);
    await host.ok(["rm", "--force", "echo"]);
  },
  120_000,
);
