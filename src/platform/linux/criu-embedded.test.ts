import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { packBundle } from "./criu-bundle-format.ts";
import { installedEmbeddedCriu, installEmbeddedCriu } from "./criu-embedded.ts";

const work = mkdtempSync(join(tmpdir(), "autopod-criu-embedded-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A bundle whose bin/criu is a script printing `criu --version` as CRIU does (a real executable, run by the installer). */
function bundle(version: string, printed = version, extra = ""): Uint8Array {
  const script = `#!/bin/sh\necho "Version: ${printed}"\necho "GitID: autopod-ed8a74321b5a"\n${extra}`;
  return packBundle({ criuVersion: version, gitId: "autopod-ed8a74321b5a" }, [
    { path: "bin/criu", mode: 0o755, bytes: new TextEncoder().encode(script) },
    { path: "lib/libfake.so.1", mode: 0o644, bytes: new TextEncoder().encode(`library of ${version}`) },
  ]);
}

describe("installEmbeddedCriu", () => {
  test("unpacks under the prefix, points current at it, and runs; again, it changes nothing", async () => {
    const prefix = join(work, "a");
    expect(installedEmbeddedCriu(prefix)).toBeNull();
    const r = await installEmbeddedCriu(prefix, { blob: bundle("4.2.1") });
    expect(r).toMatchObject({ path: join(prefix, "current/bin/criu"), criuVersion: "4.2.1", gitId: "autopod-ed8a74321b5a", changed: true });
    expect(readlinkSync(join(prefix, "current"))).toBe(r.id);
    expect(installedEmbeddedCriu(prefix)).toBe(r.path);
    expect(readFileSync(join(prefix, "current/lib/libfake.so.1"), "utf8")).toBe("library of 4.2.1");
    expect(Bun.spawnSync([r.path, "--version"]).stdout.toString()).toContain("Version: 4.2.1");
    expect((await installEmbeddedCriu(prefix, { blob: bundle("4.2.1") })).changed).toBe(false);
    expect(readdirSync(prefix).sort()).toEqual([r.id, "current"].sort());
  });

  test("a damaged installed file is found and the bundle written again", async () => {
    const prefix = join(work, "b");
    const r = await installEmbeddedCriu(prefix, { blob: bundle("4.2.1") });
    writeFileSync(join(r.dir, "lib/libfake.so.1"), "damaged");
    const again = await installEmbeddedCriu(prefix, { blob: bundle("4.2.1") });
    expect(again.changed).toBe(true);
    expect(readFileSync(join(prefix, "current/lib/libfake.so.1"), "utf8")).toBe("library of 4.2.1");
  });

  test("a newer bundle replaces the current one and the old directory goes", async () => {
    const prefix = join(work, "c");
    const old = await installEmbeddedCriu(prefix, { blob: bundle("4.2.1") });
    const neu = await installEmbeddedCriu(prefix, { blob: bundle("4.2.2") });
    expect(neu.id).not.toBe(old.id);
    expect(readlinkSync(join(prefix, "current"))).toBe(neu.id);
    expect(existsSync(old.dir)).toBe(false);
  });

  test("a criu that does not run as its bundle says leaves the installed one current, and no temporary directory", async () => {
    const prefix = join(work, "d");
    const good = await installEmbeddedCriu(prefix, { blob: bundle("4.2.1") });
    await expect(installEmbeddedCriu(prefix, { blob: bundle("4.2.2", "4.1.0") })).rejects.toThrow(
      "The carried CRIU does not run on this host (it needs glibc >= 2.36): `criu --version` exited 0: Version: 4.1.0 | GitID: autopod-ed8a74321b5a",
    );
    await expect(installEmbeddedCriu(prefix, { blob: bundle("4.2.2", "4.2.2", "exit 127\n") })).rejects.toThrow("exited 127");
    expect(readlinkSync(join(prefix, "current"))).toBe(good.id);
    expect(readdirSync(prefix).sort()).toEqual([good.id, "current"].sort());
  });

  test("a binary without the bundle, a relative prefix and a corrupt bundle are refused", async () => {
    await expect(installEmbeddedCriu(join(work, "e"), { blob: null })).rejects.toThrow("This autopod binary carries no CRIU");
    await expect(installEmbeddedCriu("relative/dir", { blob: bundle("4.2.1") })).rejects.toThrow('The CRIU prefix "relative/dir" is not an absolute path');
    await expect(installEmbeddedCriu(join(work, "f"), { blob: new TextEncoder().encode("junk") })).rejects.toThrow("does not decompress");
    expect(existsSync(join(work, "f"))).toBe(false);
  });

  test("a prefix others can write to, or a symlink, is refused before anything is written", async () => {
    const open = join(work, "g");
    mkdirSync(open, { mode: 0o755 });
    chmodSync(open, 0o777);
    const uid = process.getuid?.() ?? 0;
    await expect(installEmbeddedCriu(open, { blob: bundle("4.2.1") })).rejects.toThrow(
      `The CRIU prefix "${open}" is owned by uid ${uid} with mode 777: only its owner (uid ${uid}) may write to it (chown ${uid} and chmod go-w it)`,
    );
    expect(readdirSync(open)).toEqual([]);
    const link = join(work, "h");
    symlinkSync(join(work, "a"), link);
    await expect(installEmbeddedCriu(link, { blob: bundle("4.2.1") })).rejects.toThrow(`The CRIU prefix "${link}" is not a directory (a symlink?)`);
  });
});
