/**
 * Pods whose processes are not root: the way real services run (they start as root and drop to a user of
 * their own). Root on these machines lacks CAP_SYS_RESOURCE, so CRIU cannot read another user's resource
 * limits with prlimit64(): the CRIU autopod builds (scripts/criu-patches/) reads /proc/PID/limits instead.
 * Needs root and that CRIU (scripts/install-criu.sh; AUTOPOD_CRIU points the agents at another build).
 */
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { parseCapEff } from "../src/doctor/capabilities.ts";
import { isRoot, rootTest } from "./_support.ts";
import { TestHost } from "./_pods.ts";

const T = 120_000;
let host: TestHost;

beforeAll(async () => {
  if (!isRoot) return;
  host = await TestHost.start("u");
}, 60_000);
afterAll(async () => {
  await host?.dispose();
}, 60_000);

/** Every process of a pod (host pids), its first process first. */
export function podTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    const p = out[i]!;
    const tasks = existsSync(`/proc/${p}/task`) ? readFileSync(`/proc/${p}/task/${p}/children`, "utf8") : "";
    out.push(...tasks.split(/\s+/).filter(Boolean).map(Number));
  }
  return out;
}

/** Real, effective, saved and file-system uid and gid, and the supplementary groups, of a process. */
export function credsOf(pid: number): { uid: string; gid: string; groups: string } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, "m").exec(status)?.[1]?.trim().replace(/\s+/g, " ") ?? "";
  return { uid: field("Uid"), gid: field("Gid"), groups: field("Groups") };
}

/** The process of a pod running as `uid` (its real uid), by host pid. */
function processOf(pid: number, uid: number): number {
  const found = podTree(pid).find((p) => credsOf(p).uid.split(" ")[0] === String(uid) && readFileSync(`/proc/${p}/cmdline`, "utf8").includes("sh"));
  if (found === undefined) throw new Error(`No process of uid ${uid} in the pod of pid ${pid}`);
  return found;
}

async function lines(pod: string, file: string): Promise<number[]> {
  const r = await host.cli(["exec", pod, "--", "cat", file]);
  expect(r.exitCode).toBe(0);
  return r.stdout.split("\n").filter(Boolean).map(Number);
}

function expectContiguous(xs: number[]): void {
  const bad = xs.findIndex((x, i) => x !== i + 1);
  expect(bad === -1 ? "contiguous" : `line ${bad + 1} is ${xs[bad]}`).toBe("contiguous");
}

describe("processes of other users", () => {
  rootTest(
    "a process that dropped to another uid, with limits of its own, is checkpointed and restored with its uid and limits",
    async () => {
      // Root's shell starts a counter as nobody (65534) with a lowered soft and hard RLIMIT_NOFILE.
      const inner = "ulimit -n 300; ulimit -S -n 200; i=0; while :; do i=$((i+1)); echo $i >> /tmp/counter; sleep 0.02; done";
      const pod = await host.run("nobody", ["sh", "-c", `su -s /bin/sh nobody -c '${inner}' & wait`]);
      await Bun.sleep(500);
      const before = processOf(pod.pid!, 65534);
      const limits = readFileSync(`/proc/${before}/limits`, "utf8");
      expect(limits).toMatch(/^Max open files +200 +300 /m);
      const creds = credsOf(before);

      const cp = await host.cli(["checkpoint", "nobody"]);
      // Without the patch: "Can't get rlimit 0: Operation not permitted" (root here lacks CAP_SYS_RESOURCE).
      expect(cp.stderr).not.toContain("Cannot checkpoint");
      expect(cp.exitCode).toBe(0);
      await host.ok(["restore", cp.stdout.trim()]);
      const restored = await host.pod("nobody");
      expect(restored.state).toBe("running");
      await Bun.sleep(400);
      const after = processOf(restored.pid!, 65534);
      expect(credsOf(after)).toEqual(creds);
      expect(readFileSync(`/proc/${after}/limits`, "utf8")).toBe(limits);
      const xs = await lines("nobody", "/tmp/counter");
      expectContiguous(xs);
      expect(xs.length).toBeGreaterThan(30);
    },
    T,
  );
});

describe("doctor", () => {
  rootTest(
    "says whether CAP_SYS_RESOURCE is missing, and whether the CRIU it finds works around it",
    async () => {
      const lacks = (parseCapEff(readFileSync("/proc/self/status", "utf8"))! & (1n << 24n)) === 0n;
      const r = await host.cli(["doctor", "--json"]);
      const report = JSON.parse(r.stdout) as { checks: Array<{ id: string; status: string; detail: string }> };
      const cap = report.checks.find((c) => c.id === "cap_sys_resource");
      const patches = report.checks.find((c) => c.id === "criu_patches")!;
      const isPatched = patches.status === "ok";
      if (!lacks) {
        expect(cap).toBeUndefined();
        return;
      }
      expect(cap).toBeDefined();
      expect(cap!.detail).toContain("Can't get rlimit 0");
      expect(cap!.status).toBe(isPatched ? "warn" : "fail");
      expect(cap!.detail).toContain(isPatched ? "works around the dump" : "lacks autopod's CRIU patches");
    },
    T,
  );
});
