/**
 * A pod's CPU and process limits (--cpus, --pids-max, beside --memory), on
 * the host's real cgroups: they hold, `ps` shows what the pod uses against
 * them, and they come back with the pod after a checkpoint and restore, for
 * the restored processes. On this machine the hierarchies are v1 (cpu,
 * cpuacct, pids and memory each their own), so the pod has a directory in
 * each; a v2 host has one.
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { TestHost, testRootfs } from "./_pods.ts";
import { isRoot, rootTest } from "./_support.ts";

const T = 180_000;
let host: TestHost;
beforeAll(async () => {
  if (isRoot) host = await TestHost.start("l");
}, 60_000);
afterAll(async () => {
  await host?.dispose();
}, 60_000);

interface Usage {
  state: string;
  pid: number | null;
  cpuSeconds: number | null;
  cpuLimit: number | null;
  pids: number | null;
  pidsLimit: number | null;
  memoryLimitBytes: number | null;
}

const usage = async (name: string) => (await host.pod(name)) as unknown as Usage;

/** CPUs' worth of time the pod used over `ms`, from ps. */
async function cpuRate(name: string, ms: number): Promise<number> {
  const a = (await usage(name)).cpuSeconds!;
  const t = performance.now();
  await Bun.sleep(ms);
  const b = (await usage(name)).cpuSeconds!;
  return (b - a) / ((performance.now() - t) / 1000);
}

async function until(what: string, check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting until ${what}`);
    await Bun.sleep(100);
  }
}

/** The pod's directory in one v1 hierarchy (or the v2 one). */
function cgroupFile(controller: string, pod: string, file: string): string {
  for (const base of [`/sys/fs/cgroup/${controller}`, "/sys/fs/cgroup"]) {
    const p = `${base}/autopod/${host.agentKey}/${pod}/${file}`;
    if (existsSync(p)) return readFileSync(p, "utf8").trim();
  }
  throw new Error(`No ${file} for pod ${pod}`);
}

/** The cgroups of a host process, by controller (v1: "cpu" -> "/autopod/..."). */
function cgroupsOf(pid: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(`/proc/${pid}/cgroup`, "utf8").trim().split("\n")) {
    const [, ctrls, path] = line.split(":");
    for (const c of ctrls!.split(",")) out[c || "unified"] = path!;
  }
  return out;
}

rootTest(
  "--cpus and --pids-max hold, ps shows CPU time and processes against them, and both survive checkpoint and restore",
  async () => {
    await host.run("spin", ["sh", "-c", "while :; do :; done"], ["--cpus", "0.2", "--pids-max", "12", "--memory", "64m"]);
    let u = await usage("spin");
    expect([u.cpuLimit, u.pidsLimit, u.memoryLimitBytes]).toEqual([0.2, 12, 64 * 2 ** 20]);
    expect(cgroupFile("cpu", "spin", "cpu.cfs_quota_us")).toBe("20000");
    expect(cgroupFile("pids", "spin", "pids.max")).toBe("12");
    // The busy loop would take a whole CPU: the quota holds it near a fifth.
    const before = await cpuRate("spin", 2000);
    expect(before).toBeLessThan(0.3);
    expect(before).toBeGreaterThan(0.02);
    expect(u.pids).toBe(1);

    // Forks beyond the limit fail inside the pod; the pod's count stops at it.
    // (busybox sh gives up at the first fork that fails.)
    const forks = await host.cli(["exec", "spin", "--", "sh", "-c", "i=0; while [ $i -lt 20 ]; do sleep 300 >/dev/null 2>&1 & i=$((i+1)); done"]);
    expect(forks.exitCode).not.toBe(0);
    expect(forks.stderr).toMatch(/can't fork|Resource temporarily unavailable/);
    u = await usage("spin");
    expect(u.pids).toBeLessThanOrEqual(12);
    expect(u.pids).toBeGreaterThanOrEqual(8);
    const table = await host.ok(["ps"]);
    expect(table).toMatch(/spin\s+running.*\d+(\.\d+)?s \/ 0\.2 cpu\s+\d+ \/ 12/);
    // Full, the pod has no room for an exec either: the sleeps are killed from the host.
    for (const pid of cgroupFile("pids", "spin", "cgroup.procs").split("\n").map(Number)) if (pid !== u.pid) process.kill(pid, "SIGKILL");
    await until("only the loop is left", async () => (await usage("spin")).pids === 1);

    await host.ok(["checkpoint", "spin"], T);
    await host.ok(["restore", "spin"], T);
    u = await usage("spin");
    expect([u.state, u.cpuLimit, u.pidsLimit, u.memoryLimitBytes]).toEqual(["running", 0.2, 12, 64 * 2 ** 20]);
    expect(cgroupFile("cpu", "spin", "cpu.cfs_quota_us")).toBe("20000");
    expect(cgroupFile("pids", "spin", "pids.max")).toBe("12");
    // The restored process is in the pod's cgroups of every controller, and the quota holds it again.
    const cg = cgroupsOf(u.pid!);
    for (const c of ["memory", "cpu", "pids"]) expect(cg[c] ?? cg.unified).toBe(`/autopod/${host.agentKey}/spin`);
    const after = await cpuRate("spin", 2000);
    expect(after).toBeLessThan(0.3);
    expect(after).toBeGreaterThan(0.02);
  },
  T,
);

rootTest(
  "bad limits are refused with the value quoted, and nothing is created",
  async () => {
    for (const [flags, msg] of [
      [["--cpus", "0.001"], 'CPU limit "0.001" is out of range: 0.01 to 4096 CPUs'],
      [["--cpus", "lots"], 'Invalid --cpus "lots": expected a number of CPUs like 0.5 or 2'],
      [["--pids-max", "2"], 'Process limit "2" is out of range: 4 to 4194304'],
      [["--pids-max", "-5"], "needs a value"],
    ] as const) {
      const r = await host.cli(["run", "bad", "--rootfs", testRootfs(), ...flags, "--", "sleep", "10"]);
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toContain(msg);
    }
    expect((await host.pods()).map((p) => p.name)).not.toContain("bad");
  },
  T,
);
