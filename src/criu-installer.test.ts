import { describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { CRIU_PATCHES, carriedCriuInstaller, criuPatchSetGitId } from "./criu-installer.ts";

const PATCH_DIR = resolve(import.meta.dir, "../scripts/criu-patches");

describe("carriedCriuInstaller", () => {
  test("carries every patch of scripts/criu-patches, byte for byte", () => {
    const files = readdirSync(PATCH_DIR)
      .filter((f) => f.endsWith(".patch"))
      .sort();
    expect(CRIU_PATCHES.map((p) => p.name)).toEqual(files);
    for (const p of CRIU_PATCHES) expect(p.text).toBe(readFileSync(join(PATCH_DIR, p.name), "utf8"));
  });

  test("a copy away from the source tree extracts the same patches, so it expects the same GitID", () => {
    const dir = mkdtempSync(join(tmpdir(), "autopod-criu-installer-"));
    try {
      const script = join(dir, "install-criu.sh");
      writeFileSync(script, carriedCriuInstaller());
      const id = (s: string) => /autopod-[0-9a-f]{12}/.exec(s)?.[0];
      // A fake criu that prints another GitID: each script refuses it, naming the GitID it expects.
      const fake = join(dir, "criu");
      writeFileSync(fake, "#!/bin/sh\necho 'Version: 9.9.9'\necho 'GitID: other'\n", { mode: 0o755 });
      const a = Bun.spawnSync(["bash", script, "--check", "--target", fake], { stderr: "pipe" }).stderr.toString();
      const b = Bun.spawnSync(["bash", resolve(import.meta.dir, "../scripts/install-criu.sh"), "--check", "--target", fake], {
        stderr: "pipe",
      }).stderr.toString();
      expect(a).toContain("built without autopod's CRIU patches (GitID other");
      expect(id(a)).toBeDefined();
      expect(id(a)).toBe(id(b));
      // doctor computes the same id to tell a patched CRIU from another.
      expect(id(a)).toBe(criuPatchSetGitId());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
