import { describe, expect, test } from "bun:test";
import type { ProcessReason } from "./checker.ts";
import { parseProcMaps } from "./proc-maps.ts";
import { countsForVerdict, type FileIdentity, groupProcesses, isIgnoredPath, isSystemPath, replacedFiles } from "./replaced-code.ts";

const fixture = (name: string) => Bun.file(new URL(`testdata/${name}`, import.meta.url)).text();

describe("replacedFiles", () => {
  test("a deleted library in a real capture is named; files unchanged at their paths are not", async () => {
    // The capture's copy sat in /var/tmp, which is now ignored; moved to /opt, where it counts.
    const maps = parseProcMaps((await fixture("proc-maps-deleted-lib.txt")).replaceAll("/var/tmp/autopod-cap/", "/opt/autopod-cap/"));
    // Every other file is where maps says: same device and inode.
    const same = (path: string): FileIdentity => {
      const m = maps.find((x) => x.path === path)!;
      return { major: m.major, minor: m.minor, inode: m.inode };
    };
    expect(replacedFiles(maps, "/usr/bin/python3.11", same)).toEqual([{ path: "/opt/autopod-cap/libz-copy.so.1", change: "deleted" }]);
  });

  test("a new inode on the same device is a replacement; another device proves nothing", () => {
    const maps = parseProcMaps(
      [
        "1000-2000 r-xp 00000000 fe:00 100  /usr/lib/libssl.so.3",
        "3000-4000 r-xp 00000000 00:2a 200  /usr/lib/libcrypto.so.3",
        "5000-6000 r--p 00000000 fe:00 300  /usr/lib/data.so",
      ].join("\n"),
    );
    const now: Record<string, FileIdentity> = {
      "/usr/lib/libssl.so.3": { major: 0xfe, minor: 0, inode: 101 },
      "/usr/lib/libcrypto.so.3": { major: 0, minor: 0x30, inode: 999 }, // overlayfs reports its own device
      "/usr/lib/data.so": { major: 0xfe, minor: 0, inode: 301 }, // not executable
    };
    expect(replacedFiles(maps, null, (p) => now[p] ?? null)).toEqual([{ path: "/usr/lib/libssl.so.3", change: "replaced" }]);
  });

  test("memfd, /tmp and /dev mappings are ignored; a deleted exe is named", async () => {
    const memfd = parseProcMaps(await fixture("proc-maps-memfd.txt"));
    expect(replacedFiles(memfd, "/memfd:sealed-91173221a7ea (deleted)", () => null)).toEqual([]);
    const tmp = parseProcMaps("1000-2000 r-xp 00000000 fe:00 1  /tmp/x.so (deleted)\n3000-4000 r-xp 00000000 00:05 2  /dev/zero (deleted)\n");
    expect(replacedFiles(tmp, "/usr/sbin/sshd (deleted)", () => null)).toEqual([{ path: "/usr/sbin/sshd", change: "deleted" }]);
  });

  test("isIgnoredPath", () => {
    // Where no package installs: needrestart's list (temporary and runtime files), one rule for the report and the metrics.
    for (const p of ["/tmp/a.so", "/var/tmp/a.so", "/run/user/0/x.so", "/dev/shm/x", "/memfd:foo", "/SYSV00000000", "/[aio]"])
      expect(isIgnoredPath(p)).toBe(true);
    for (const p of ["/usr/lib/libc.so.6", "/opt/app/bin/app", "/tmpfoo/a.so", "/var/lib/x.so", "/runner/a.so", "/srv/app/a.so"])
      expect(isIgnoredPath(p)).toBe(false);
  });
});

test("groupProcesses: pods, then units, then the rest by command", () => {
  const p = (pid: number, extra: Partial<ProcessReason>): ProcessReason => ({ kind: "process", pid, command: "x", files: [], ...extra });
  expect(
    groupProcesses([
      p(1, { unit: "nginx.service" }),
      p(2, { unit: "nginx.service" }),
      p(3, { pod: "web", unit: "autopod.service" }),
      p(4, { command: "python3" }),
    ]),
  ).toEqual([
    { kind: "group", group: "other", name: "python3", pids: [4] },
    { kind: "group", group: "pod", name: "web", pids: [3] },
    { kind: "group", group: "unit", name: "nginx.service", pids: [1, 2] },
  ]);
});

test("only host processes on replaced system files count toward the verdict", () => {
  for (const p of ["/usr/lib/x86_64-linux-gnu/libssl.so.3", "/usr/sbin/sshd", "/lib/x86_64-linux-gnu/libc.so.6", "/bin/bash", "/opt/vendor/bin/agent"])
    expect(isSystemPath(p)).toBe(true);
  for (const p of ["/usr/local/bin/autopod", "/work/main/dist/autopod", "/home/me/a.out", "/var/tmp/x.so", "/usrx/lib.so"]) expect(isSystemPath(p)).toBe(false);
  const proc = (files: string[], pod?: string): ProcessReason => ({
    kind: "process",
    pid: 1,
    command: "x",
    ...(pod ? { pod } : {}),
    files: files.map((path) => ({ path, change: "deleted" as const })),
  });
  expect(countsForVerdict(proc(["/usr/lib/libssl.so.3"]))).toBe(true);
  expect(countsForVerdict(proc(["/usr/lib/libssl.so.3"], "web"))).toBe(false);
  expect(countsForVerdict(proc(["/usr/local/bin/autopod"]))).toBe(false);
});
