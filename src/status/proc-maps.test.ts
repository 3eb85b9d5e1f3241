import { describe, expect, test } from "bun:test";
import { isExecutableFileMapping, parseProcMaps } from "./proc-maps.ts";

const fixture = (name: string) => Bun.file(new URL(`testdata/${name}`, import.meta.url)).text();

describe("parseProcMaps on real captures", () => {
  test("python3 that loaded a copied libz, then the copy was deleted", async () => {
    const maps = parseProcMaps(await fixture("proc-maps-deleted-lib.txt"));
    expect(maps).toHaveLength(58);
    const exec = maps.filter(isExecutableFileMapping);
    expect(exec.map((m) => m.path)).toContain("/usr/lib/x86_64-linux-gnu/libc.so.6");
    const deleted = exec.filter((m) => m.deleted);
    expect(deleted).toEqual([
      {
        start: 0x7fa857bf4000n,
        end: 0x7fa857c07000n,
        perms: "r-xp",
        major: 0xfe,
        minor: 0,
        inode: 15351810,
        path: "/var/tmp/autopod-cap/libz-copy.so.1",
        deleted: true,
      },
    ]);
    // [vdso] and [vsyscall] are executable but not files
    expect(exec.some((m) => m.path.startsWith("["))).toBe(false);
    expect(maps.find((m) => m.path === "[vsyscall]")?.perms).toBe("--xp");
    expect(maps.some((m) => m.path === "" && m.inode === 0)).toBe(true); // anonymous
  });
  test("a process running from a sealed memfd", async () => {
    const maps = parseProcMaps(await fixture("proc-maps-memfd.txt"));
    const exec = maps.filter(isExecutableFileMapping);
    expect(exec.map((m) => [m.path, m.deleted])).toContainEqual(["/memfd:sealed-91173221a7ea", true]);
  });
  test("paths with spaces", () => {
    const [m] = parseProcMaps("7f00-7f10 r-xp 00000000 08:01 42  /opt/my app/lib x.so (deleted)\n");
    expect(m).toMatchObject({ path: "/opt/my app/lib x.so", deleted: true, major: 8, minor: 1, inode: 42 });
  });
});
