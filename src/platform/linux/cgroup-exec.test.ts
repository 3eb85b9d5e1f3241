import { expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { joinCgroupsArgv } from "./cgroup-exec.ts";

test("joinCgroupsArgv joins each cgroup with a fixed shell script, then execs the command with its arguments untouched", () => {
  const dirs = [`/sys/fs/cgroup/memory/x ${"$"}(y)`, "/sys/fs/cgroup/pids/x"];
  const argv = joinCgroupsArgv(dirs, ["/c", "restore", "--root", "/a b", "--"]);
  expect(argv.slice(0, 2)).toEqual(["/bin/sh", "-c"]);
  expect(argv.slice(3)).toEqual(["autopod-join-cgroups", ...dirs, "--", "/c", "restore", "--root", "/a b", "--"]);
  // Run the script for real against fake cgroup directories: the shell writes its own pid 0 into each, then execs.
  const a = mkdtempSync("/tmp/cg-a-");
  const b = mkdtempSync("/tmp/cg-b-");
  try {
    const r = Bun.spawnSync(["/bin/sh", "-c", argv[2]!, "x", a, b, "--", "/bin/echo", "ran", "a b", "--"], { stdout: "pipe" });
    expect(r.stdout.toString()).toBe("ran a b --\n");
    expect(readFileSync(`${a}/cgroup.procs`, "utf8")).toBe("0\n");
    expect(readFileSync(`${b}/cgroup.procs`, "utf8")).toBe("0\n");
    // A cgroup it cannot join stops it before the command runs.
    const bad = Bun.spawnSync(["/bin/sh", "-c", argv[2]!, "x", "/nonexistent", "--", "/bin/echo", "ran"], { stdout: "pipe", stderr: "pipe" });
    expect([bad.exitCode, bad.stdout.toString()]).toEqual([126, ""]);
  } finally {
    rmSync(a, { recursive: true });
    rmSync(b, { recursive: true });
  }
});

test("no cgroups: the command as it is; a directory outside /sys/fs/cgroup is refused", () => {
  expect(joinCgroupsArgv([], ["/bin/true"])).toEqual(["/bin/true"]);
  expect(() => joinCgroupsArgv(["/tmp/x"], ["/bin/true"])).toThrow('Not cgroup directories under /sys/fs/cgroup: "/tmp/x"');
});
