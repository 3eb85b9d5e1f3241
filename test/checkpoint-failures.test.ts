/**
 * Zero data loss when things go wrong around a checkpoint or restore: the
 * agent killed in the middle, a full disk. Real CRIU, real agents; needs root.
 * After every failure the pod runs (with its memory intact), or is safely
 * checkpointed with a complete image: never neither.
 */
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { isRoot, rootTest } from "./_support.ts";
import { TestHost, sh } from "./_pods.ts";

const T = 240_000;
let host: TestHost;

beforeAll(async () => {
  if (isRoot) host = await TestHost.start("f");
}, 60_000);
afterAll(async () => {
  await host?.dispose();
}, 60_000);

async function logOf(h: TestHost, pod: string): Promise<string> {
  return (await h.cli(["logs", pod])).stdout;
}

/** memhog's checksum of its memory, asked for with SIGUSR2. */
async function memorySum(h: TestHost, pod: string): Promise<string> {
  const p = await h.pod(pod);
  const before = (await logOf(h, pod)).length;
  process.kill(p.pid!, "SIGUSR2");
  return (await h.waitForLog(pod, /sum [0-9a-f]+/, before)).split(" ")[1]!;
}

/** The state of a process as /proc says it: R, S, T (stopped), Z ... */
function procState(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
}

/** After a failure: running and not stopped, with the same memory; or checkpointed with an image that restores it. */
async function expectRunningOrCheckpointed(h: TestHost, pod: string, sum: string): Promise<"running" | "checkpointed"> {
  const p = await h.pod(pod);
  if (p.state === "running") {
    expect(procState(p.pid!)).not.toBe("T");
    expect(await memorySum(h, pod)).toBe(sum);
    return "running";
  }
  expect(p.state).toBe("checkpointed");
  const images = JSON.parse(await h.ok(["images", "--json"])).filter((i: { pod: string }) => i.pod === pod);
  expect(images.length).toBeGreaterThan(0);
  await h.ok(["restore", images[images.length - 1].id]);
  expect(await memorySum(h, pod)).toBe(sum);
  return "checkpointed";
}

describe("the agent killed", () => {
  rootTest(
    "during a checkpoint: afterwards the pod runs, or is checkpointed with a complete image",
    async () => {
      const outcomes: string[] = [];
      for (const [i, delay] of [10, 120, 350, 800, 1600].entries()) {
        const pod = `kc${i}`;
        await host.run(pod, ["/usr/local/bin/memhog", "192"]);
        await host.waitForLog(pod, /ready/);
        const sum = await memorySum(host, pod);
        const cp = host.cli(["checkpoint", pod], T);
        await Bun.sleep(delay);
        await host.killAgent("SIGKILL");
        await cp;
        await host.startAgent();
        outcomes.push(`${delay}ms: ${await expectRunningOrCheckpointed(host, pod, sum)}`);
        expect(readdirSync(join(host.stateDir, "tmp"))).toEqual([]);
        await host.ok(["rm", "--force", pod]);
      }
      console.log(`checkpoint interrupted at: ${outcomes.join(", ")}`);
    },
    T,
  );

  rootTest(
    "right after a checkpoint answered, while the pod's memory, network and cgroup are still being freed: a restore after restart works",
    async () => {
      const pod = "kafter";
      await host.run(pod, ["/usr/local/bin/memhog", "512"]);
      await host.waitForLog(pod, /ready/);
      const sum = await memorySum(host, pod);
      // An agent that waits 2 s before releasing a checkpointed pod: killed in that window.
      await host.killAgent("SIGTERM");
      await host.startAgent(undefined, { AUTOPOD_TEST_RELEASE_DELAY_MS: "2000" });
      await host.ok(["checkpoint", pod]);
      await host.killAgent("SIGKILL");
      expect(readdirSync("/run/netns").filter((n) => n.endsWith(`-${pod}`)).length).toBe(1); // not released
      await host.startAgent();
      expect((await host.pod(pod)).state).toBe("checkpointed");
      expect(readdirSync("/run/netns").filter((n) => n.endsWith(`-${pod}`))).toEqual([]); // released on start
      expect(await expectRunningOrCheckpointed(host, pod, sum)).toBe("checkpointed");
      await host.ok(["rm", "--force", pod]);
    },
    T,
  );

  rootTest(
    "during a restore: afterwards the image is intact, the pod is not half-alive, and a retry works",
    async () => {
      const outcomes: string[] = [];
      for (const [i, delay] of [10, 150, 400, 900].entries()) {
        const pod = `kr${i}`;
        await host.run(pod, ["/usr/local/bin/memhog", "192"]);
        await host.waitForLog(pod, /ready/);
        const sum = await memorySum(host, pod);
        const id = await host.ok(["checkpoint", pod]);
        const rs = host.cli(["restore", id], T);
        await Bun.sleep(delay);
        await host.killAgent("SIGKILL");
        await rs;
        await host.startAgent();
        const p = await host.pod(pod);
        if (p.state === "checkpointed") {
          // Not half-alive: nothing of the pod runs.
          const cg = host.podCgroups().find((d) => d.endsWith(`/${pod}`));
          if (cg && existsSync(join(cg, "cgroup.procs"))) expect(readFileSync(join(cg, "cgroup.procs"), "utf8").trim()).toBe("");
        }
        expect(JSON.parse(await host.ok(["images", "--json"])).map((x: { id: string }) => x.id)).toContain(id);
        outcomes.push(`${delay}ms: ${await expectRunningOrCheckpointed(host, pod, sum)}`);
        await host.ok(["rm", "--force", pod]);
      }
      console.log(`restore interrupted at: ${outcomes.join(", ")}`);
    },
    T,
  );
});

describe("a full disk during a checkpoint", () => {
  rootTest(
    "leaves the pod running and no partial image",
    async () => {
      const small = await TestHost.start("s");
      try {
        // The state directory on a 400 MiB tmpfs, filled up while the checkpoint runs.
        await small.killAgent("SIGTERM");
        const m = await sh(["mount", "-t", "tmpfs", "-o", "size=400m,mode=0700", "autopod-test-full", small.stateDir]);
        expect(m.exitCode).toBe(0);
        await small.startAgent();
        await small.run("big", ["/usr/local/bin/memhog", "128"]);
        await small.waitForLog("big", /ready/);
        const sum = await memorySum(small, "big");
        const cp = small.cli(["checkpoint", "big"], T);
        await Bun.sleep(20);
        const filler = join(small.stateDir, "filler");
        await sh(["dd", "if=/dev/zero", `of=${filler}`, "bs=1M"], { timeoutMs: 60_000 });
        const r = await cp;
        await sh(["rm", "-f", filler]);
        expect(r.exitCode).not.toBe(0);
        expect(r.stderr).toMatch(/No space left on device|ENOSPC|disk is full|Not enough free space/);
        expect(r.stderr).toContain("the pod keeps running");
        console.log(`full disk: ${r.stderr.trim()}`);
        const p = await small.pod("big");
        expect(p.state).toBe("running");
        expect(procState(p.pid!)).not.toBe("T");
        expect(await memorySum(small, "big")).toBe(sum);
        expect(JSON.parse(await small.ok(["images", "--json"]))).toEqual([]);
        expect(readdirSync(join(small.stateDir, "tmp"))).toEqual([]);
        // The space is back: a checkpoint of a smaller pod works.
        await small.ok(["rm", "--force", "big"]);
        await small.run("little", ["/usr/local/bin/memhog", "8"]);
        await small.waitForLog("little", /ready/);
        await small.ok(["checkpoint", "little"]);
      } finally {
        await small.dispose();
      }
    },
    T,
  );
});
