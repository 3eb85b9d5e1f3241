/**
 * Clients that go away mid-stream: exec and logs -f clients killed at random
 * points while output is still coming. The agent must live on past the exec
 * keepalive period (60 s) and still answer, and the orphaned commands end.
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { TestHost } from "./_pods.ts";
import { autopodArgv, isRoot, rootTest } from "./_support.ts";

let host: TestHost;
beforeAll(async () => {
  if (isRoot) {
    host = await TestHost.start("x");
    // A pod that keeps writing its log, for the followers.
    await host.run("chatty", ["sh", "-c", "while :; do echo tick; sleep 0.01; done"]);
  }
}, 60_000);
afterAll(async () => {
  await host?.dispose();
}, 60_000);

/** Start the CLI and SIGKILL it after `ms`, mid-stream. */
async function killedAfter(args: string[], ms: number): Promise<void> {
  const p = Bun.spawn([...autopodArgv(), ...args], { env: { ...process.env, ...host.env }, stdout: "pipe", stderr: "ignore", stdin: "ignore" });
  const reader = p.stdout.getReader();
  await reader.read(); // output is flowing
  await Bun.sleep(ms);
  p.kill("SIGKILL");
  await p.exited;
}

rootTest(
  "exec and logs -f clients killed mid-stream, many times: the agent outlives the keepalive period and still answers",
  async () => {
    const agentPid = host.agent!.pid;
    const runs: Promise<void>[] = [];
    for (let i = 0; i < 24; i++) {
      const ms = Math.floor(Math.random() * 400);
      runs.push(
        i % 3 === 2
          ? killedAfter(["logs", "-f", "chatty"], ms)
          : killedAfter(["exec", "chatty", "--", "sh", "-c", `while :; do echo out-${i}; echo err-${i} >&2; done`], ms),
      );
      if (i % 6 === 5) await Promise.all(runs.splice(0));
    }
    await Promise.all(runs);
    // Past the exec keepalive period (60 s), when a timer wrote to the closed stream and the agent died.
    await Bun.sleep(65_000);
    expect(host.agent!.exitCode).toBeNull();
    expect(host.agent!.pid).toBe(agentPid);
    expect((await host.pod("chatty")).state).toBe("running");
    // The commands whose clients left were killed with them.
    const ps = await host.ok(["exec", "chatty", "--", "ps", "-o", "args"]);
    expect(ps).not.toContain("echo out-");
    expect(await host.ok(["exec", "chatty", "--", "echo", "still here"])).toBe("still here");
  },
  180_000,
);
