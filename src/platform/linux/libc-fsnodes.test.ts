import { expect, test } from "bun:test";
import { lstatSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { lgetxattr, lsetxattr, mkfifo, mknodWhiteout, OVERLAY_OPAQUE } from "./libc.ts";

const isRoot = process.getuid?.() === 0;

test.skipIf(!isRoot)("whiteouts, FIFOs and the opaque xattr (needs root: mknod of a device, trusted.* xattrs)", () => {
  const dir = mkdtempSync(join(tmpdir(), "fsnodes-"));
  try {
    mknodWhiteout(join(dir, "gone"));
    const st = lstatSync(join(dir, "gone"));
    expect(st.isCharacterDevice()).toBe(true);
    expect(st.rdev).toBe(0);
    mkfifo(join(dir, "pipe"), 0o640);
    expect(lstatSync(join(dir, "pipe")).isFIFO()).toBe(true);
    mkdirSync(join(dir, "d"));
    expect(lgetxattr(join(dir, "d"), OVERLAY_OPAQUE)).toBeNull();
    lsetxattr(join(dir, "d"), OVERLAY_OPAQUE, "y");
    expect(lgetxattr(join(dir, "d"), OVERLAY_OPAQUE)).toBe("y");
    expect(() => mknodWhiteout(join(dir, "gone"))).toThrow(/errno 17/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
