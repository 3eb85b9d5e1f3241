import { expect, test } from "bun:test";
import { cpuQuotaUs, parseKeyValues, parseMountinfo, pickHierarchy, pickMemoryHierarchy, podCgroupDirs, siblingDirs, unescapeMount } from "./cgroup.ts";

// Captured on this project's machines: cgroup v1 with a v2 "unified" mount beside it (hybrid).
const HYBRID = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw`;

// A pure v2 host (Debian 12 with systemd).
const UNIFIED = `25 21 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot`;

test("hybrid: v1 memory, because the unified mount has no memory controller", () => {
  const h = pickMemoryHierarchy(parseMountinfo(HYBRID), (mp) => (mp === "/sys/fs/cgroup/unified" ? ["hugetlb"] : []));
  expect(h).toEqual({ version: 1, mountpoint: "/sys/fs/cgroup/memory" });
});

test("unified: v2", () => {
  const h = pickMemoryHierarchy(parseMountinfo(UNIFIED), () => ["cpuset", "cpu", "io", "memory", "pids"]);
  expect(h).toEqual({ version: 2, mountpoint: "/sys/fs/cgroup" });
});

test("no memory controller anywhere", () => {
  expect(pickMemoryHierarchy(parseMountinfo(UNIFIED), () => ["cpu"])).toBeNull();
});

test("mount points with escaped spaces", () => {
  expect(unescapeMount("/mnt/a\\040b")).toBe("/mnt/a b");
});

test("oom_control (v1) and memory.events (v2)", () => {
  expect(parseKeyValues("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n").oom_kill).toBe(2);
  expect(parseKeyValues("low 0\nhigh 0\nmax 14\noom 1\noom_kill 1\noom_group_kill 0\n")).toEqual({
    low: 0,
    high: 0,
    max: 14,
    oom: 1,
    oom_kill: 1,
    oom_group_kill: 0,
  });
});

test("v1: the pod's cpu, cpuacct and pids cgroups are the same path in their own hierarchies; v2: one directory holds them all", () => {
  const v1 = (c: string) => ({ version: 1 as const, mountpoint: `/sys/fs/cgroup/${c}` });
  const dir = "/sys/fs/cgroup/memory/autopod/k1/web";
  expect(podCgroupDirs(dir, v1)).toEqual({
    memory: dir,
    cpu: "/sys/fs/cgroup/cpu/autopod/k1/web",
    cpuacct: "/sys/fs/cgroup/cpuacct/autopod/k1/web",
    pids: "/sys/fs/cgroup/pids/autopod/k1/web",
  });
  expect(siblingDirs(dir, v1)).toEqual(["/sys/fs/cgroup/cpu/autopod/k1/web", "/sys/fs/cgroup/cpuacct/autopod/k1/web", "/sys/fs/cgroup/pids/autopod/k1/web"]);
  // cpu and cpuacct mounted together (cpu,cpuacct): one directory for both; no pids controller: none for it.
  const shared = (c: string) =>
    c === "pids" ? null : { version: 1 as const, mountpoint: c === "memory" ? "/sys/fs/cgroup/memory" : "/sys/fs/cgroup/cpu,cpuacct" };
  expect(siblingDirs(dir, shared)).toEqual(["/sys/fs/cgroup/cpu,cpuacct/autopod/k1/web"]);
  const v2 = () => ({ version: 2 as const, mountpoint: "/sys/fs/cgroup" });
  expect(siblingDirs("/sys/fs/cgroup/autopod/k1/web", v2)).toEqual([]);
  expect(podCgroupDirs("/sys/fs/cgroup/autopod/k1/web", v2).pids).toBe("/sys/fs/cgroup/autopod/k1/web");
});

test("the v1 hierarchies of this project's machines, one per controller", () => {
  const controllersOf = (mp: string) => (mp === "/sys/fs/cgroup/unified" ? ["hugetlb"] : []);
  const mounts = parseMountinfo(`${HYBRID}\n39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids`);
  expect(pickHierarchy(mounts, controllersOf, "cpu")).toEqual({ version: 1, mountpoint: "/sys/fs/cgroup/cpu" });
  expect(pickHierarchy(mounts, controllersOf, "pids")).toEqual({ version: 1, mountpoint: "/sys/fs/cgroup/pids" });
  expect(pickHierarchy(mounts, controllersOf, "cpuacct")).toBeNull();
  expect(pickHierarchy(parseMountinfo(UNIFIED), () => ["cpu", "memory", "pids"], "pids")).toEqual({ version: 2, mountpoint: "/sys/fs/cgroup" });
});

test("CPU quota: CPUs per 100 ms period, never below the kernel's 1 ms", () => {
  expect(cpuQuotaUs(1.5)).toBe(150_000);
  expect(cpuQuotaUs(0.25)).toBe(25_000);
  expect(cpuQuotaUs(0.001)).toBe(1000);
});
