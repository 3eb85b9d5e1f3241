import { expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { siblingDirs } from "./cgroup.ts";
import { joinCgroupsArgv } from "./cgroup-exec.ts";
import {
  CriuError,
  criuErrorHint,
  criuLockTables,
  criuRestore,
  dumpArgv,
  firstCriuError,
  imageBytes,
  inCgroup,
  OUTPUT_GRACE_MS,
  restoreArgv,
  restoreDeadlineMs,
} from "./criu-runner.ts";

test("firstCriuError skips the harmless RLIMIT line", () => {
  const log = [
    "(00.036702) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted",
    "(00.100000) Warn  (criu/something.c:1): whatever",
    "(00.200000) Error (criu/files-reg.c:2190): File tmp/log has bad size 54 (expect 0)",
    "(00.300000) Error (criu/cr-restore.c:1): Restoring FAILED.",
  ].join("\n");
  expect(firstCriuError(log)).toBe("Error (criu/files-reg.c:2190): File tmp/log has bad size 54 (expect 0)");
  expect(firstCriuError("(0.1) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self")).toBe("");
});

test("dump and restore argument arrays", () => {
  const ext = [{ podPath: "/dev/null", key: "dev-null", hostPath: "/dev/null" }];
  const d = dumpArgv({ criu: "/c", pid: 42, imagesDir: "/i", netnsInode: 4026532177, externalMounts: ext, leave: "stopped" });
  expect(d).toContain("--leave-stopped");
  expect(d).not.toContain("--leave-running");
  expect(d.join(" ")).toContain("--external net[4026532177]:podnet");
  expect(d.join(" ")).toContain("--external mnt[/dev/null]:dev-null");
  const r = restoreArgv(
    { criu: "/c", imagesDir: "/i", root: "/r", netnsPath: "/n", externalMounts: ext, tcpEstablished: false, cgroup: "/sys/fs/cgroup/memory/p" },
    3,
    "/i/p",
  );
  expect(r).toContain("--manage-cgroups=ignore");
  expect(r).toContain("--tcp-close");
  expect(r.join(" ")).toContain("--inherit-fd fd[3]:podnet");
  expect(r.join(" ")).toContain("--external mnt[dev-null]:/dev/null");
  expect(r).not.toContain("--leave-stopped");
  const stopped = restoreArgv(
    { criu: "/c", imagesDir: "/i", root: "/r", netnsPath: "/n", externalMounts: ext, tcpEstablished: true, cgroup: null, leaveStopped: true },
    3,
    "/i/p",
  );
  expect(stopped).toContain("--leave-stopped");
});

test("CRIU's own network lock only where autopod's does not hold the pod", () => {
  const lockOf = (argv: string[]) => argv[argv.indexOf("--network-lock") + 1];
  const dump = { criu: "/c", pid: 42, imagesDir: "/i", netnsInode: 1, externalMounts: [], leave: "stopped" as const };
  expect(lockOf(dumpArgv(dump))).toBe("nftables");
  expect(lockOf(dumpArgv({ ...dump, isNetworkLocked: true }))).toBe("skip");
  const restore = { criu: "/c", imagesDir: "/i", root: "/r", netnsPath: "/n", externalMounts: [], tcpEstablished: true, cgroup: null };
  expect(lockOf(restoreArgv(restore, 3, "/i/p"))).toBe("nftables");
  expect(lockOf(restoreArgv({ ...restore, isNetworkLocked: true }, 3, "/i/p"))).toBe("skip");
});

test("criuLockTables finds CRIU's lock tables in real nft output", () => {
  const out = "table inet filter\ntable inet CRIU-17708\ntable ip nat\n";
  expect(criuLockTables(out)).toEqual([{ family: "inet", name: "CRIU-17708" }]);
  expect(criuLockTables("")).toEqual([]);
});

test("inCgroup joins the pod's cgroup and its siblings in the other v1 hierarchies, then execs the command untouched", () => {
  const dir = "/sys/fs/cgroup/memory/autopod/k/web";
  const argv = inCgroup(dir, ["/c", "restore"]);
  expect(argv).toEqual(joinCgroupsArgv([dir, ...siblingDirs(dir)], ["/c", "restore"]));
});

/** A stand-in for criu: a script that finds -W DIR in its arguments and does `body` there. */
function fakeCriu(dir: string, body: string): string {
  const path = `${dir}/criu`;
  writeFileSync(path, `#!/bin/bash\nwhile [ "$1" != -W ]; do shift; done\nW=$2\n${body}\n`, { mode: 0o755 });
  return path;
}

test("a restore whose log grows past the cap is killed and fails, saying why (fuzz finding P1: CRIU looped writing 6 MB/s)", async () => {
  const dir = mkdtempSync(`${tmpdir()}/criu-runner-`);
  try {
    mkdirSync(`${dir}/images`);
    mkdirSync(`${dir}/work`);
    const criu = fakeCriu(dir, 'while true; do head -c 65536 /dev/zero >> "$W/restore.log"; done');
    const started = performance.now();
    const e = await criuRestore({
      criu,
      imagesDir: `${dir}/images`,
      workDir: `${dir}/work`,
      root: "/",
      netnsPath: "/dev/null",
      externalMounts: [],
      tcpEstablished: false,
      cgroup: null,
      logCapBytes: 4 << 20,
    }).catch((x: unknown) => x as Error);
    expect(e).toBeInstanceOf(CriuError);
    expect((e as Error).message).toMatch(/^criu restore failed \(exit \d+\): killed because its log .*\/work\/restore\.log grew past 4194304 bytes \(\d+\)$/);
    expect(performance.now() - started).toBeLessThan(20_000);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a restore that passes its deadline is killed and fails, saying why; the deadline grows with the image", async () => {
  const dir = mkdtempSync(`${tmpdir()}/criu-runner-`);
  try {
    mkdirSync(`${dir}/images`);
    mkdirSync(`${dir}/work`);
    writeFileSync(`${dir}/images/pages-1.img`, new Uint8Array(8192));
    expect(imageBytes(`${dir}/images`)).toBe(8192);
    const e = await criuRestore({
      criu: fakeCriu(dir, "exec sleep 600"),
      imagesDir: `${dir}/images`,
      workDir: `${dir}/work`,
      root: "/",
      netnsPath: "/dev/null",
      externalMounts: [],
      tcpEstablished: false,
      cgroup: null,
      timeoutMs: 500,
    }).catch((x: unknown) => x as Error);
    expect((e as Error).message).toBe("criu restore failed (exit 137): killed because it ran past its deadline of 1 s");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  expect(restoreDeadlineMs(0)).toBe(60_000);
  expect(restoreDeadlineMs(1 << 30)).toBe(124_000);
  expect(restoreDeadlineMs(2 ** 50)).toBe(30 * 60_000);
});

test("a restore killed at its deadline answers at once though the tasks it forked still hold its output (fuzz finding: fd 1 twice in an fd table)", async () => {
  const dir = mkdtempSync(`${tmpdir()}/criu-runner-`);
  try {
    mkdirSync(`${dir}/images`);
    mkdirSync(`${dir}/work`);
    // The stand-in forks a task that keeps CRIU's stdout and stderr, then hangs as CRIU did.
    const criu = fakeCriu(dir, `sleep 30 & echo $! > "$W/child"; exec sleep 600`);
    const started = performance.now();
    const e = await criuRestore({
      criu,
      imagesDir: `${dir}/images`,
      workDir: `${dir}/work`,
      root: "/",
      netnsPath: "/dev/null",
      externalMounts: [],
      tcpEstablished: false,
      cgroup: null,
      timeoutMs: 500,
    }).catch((x: unknown) => x as Error);
    const took = performance.now() - started;
    process.kill(Number(readFileSync(`${dir}/work/child`, "utf8")), "SIGKILL");
    expect((e as Error).message).toBe("criu restore failed (exit 137): killed because it ran past its deadline of 1 s");
    expect(took).toBeLessThan(500 + OUTPUT_GRACE_MS + 2000);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a refused prlimit64 (root without CAP_SYS_RESOURCE, CRIU without autopod's patches) says why and what to install", () => {
  const e = new CriuError("dump", 1, "/x/dump.log", "Error (criu/cr-dump.c:389): Can't get rlimit 0: Operation not permitted");
  expect(e.message).toStartWith(
    "criu dump failed (exit 1): Error (criu/cr-dump.c:389): Can't get rlimit 0: Operation not permitted; a process of the pod runs as another user",
  );
  expect(e.message).toContain("scripts/install-criu.sh");
  expect(criuErrorHint("Error (criu/files-reg.c:2190): File tmp/log has bad size 54 (expect 0)")).toBe("");
});
