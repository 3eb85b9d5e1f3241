import { expect, test } from "bun:test";
import { parseKeyValues, parseMountinfo, pickMemoryHierarchy, unescapeMount } from "./cgroup.ts";

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
