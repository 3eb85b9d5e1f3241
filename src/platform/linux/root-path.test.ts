import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findExecutableInRoot as find, resolveInRoot } from "./root-path.ts";

const PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const findExecutableInRoot = (root: string, cmd: string) => find(root, cmd, PATH);

const root = mkdtempSync(join(tmpdir(), "autopod-rootpath-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
mkdirSync(join(root, "bin"));
mkdirSync(join(root, "usr/bin"), { recursive: true });
writeFileSync(join(root, "bin/busybox"), "#!");
chmodSync(join(root, "bin/busybox"), 0o755);
writeFileSync(join(root, "bin/data"), "x");
symlinkSync("/bin/busybox", join(root, "bin/sh"));
symlinkSync("../../bin/busybox", join(root, "usr/bin/env"));
symlinkSync("/etc", join(root, "escape"));
symlinkSync("../../../../../../etc/passwd", join(root, "dotdot"));
symlinkSync("loop2", join(root, "loop1"));
symlinkSync("loop1", join(root, "loop2"));

describe("resolveInRoot", () => {
  test("absolute symlinks restart at the root", () => {
    const r = resolveInRoot(root, "/bin/sh");
    expect(r.inRoot).toBe("/bin/busybox");
    expect(r.onHost).toBe(join(root, "bin/busybox"));
    expect(r.stat?.isFile()).toBe(true);
  });
  test("relative symlinks and '..' stay inside", () => {
    expect(resolveInRoot(root, "/usr/bin/env").inRoot).toBe("/bin/busybox");
    expect(resolveInRoot(root, "/dotdot").inRoot).toBe("/etc/passwd");
    expect(resolveInRoot(root, "/dotdot").stat).toBeNull();
  });
  test("a link to a host directory is a path inside the root", () => {
    const r = resolveInRoot(root, "/escape/shadow");
    expect(r.inRoot).toBe("/etc/shadow");
    expect(r.onHost).toBe(join(root, "etc/shadow"));
    expect(r.stat).toBeNull();
  });
  test("the root itself", () => {
    expect(resolveInRoot(root, "/").onHost).toBe(root);
    expect(resolveInRoot(root, "/").stat?.isDirectory()).toBe(true);
  });
  test("symlink loops are an error", () => {
    expect(() => resolveInRoot(root, "/loop1")).toThrow(/Too many symbolic links/);
  });
});

describe("findExecutableInRoot", () => {
  test("searches PATH inside the root", () => {
    expect(findExecutableInRoot(root, "sh")).toBe("/bin/busybox");
    expect(findExecutableInRoot(root, "env")).toBe("/bin/busybox");
    expect(findExecutableInRoot(root, "/bin/sh")).toBe("/bin/busybox");
  });
  test("rejects missing and non-executable files", () => {
    expect(findExecutableInRoot(root, "nope")).toBeNull();
    expect(findExecutableInRoot(root, "/bin/data")).toBeNull();
    expect(findExecutableInRoot(root, "/escape/passwd")).toBeNull();
  });
});
