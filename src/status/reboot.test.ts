import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CheckOptions } from "./checker.ts";
import { hostPaths } from "./host-paths.ts";
import { parseNeedsRestarting, parseRebootRequiredPkgs, rebootChecker } from "./reboot.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function fakeHost(files: Record<string, string>): CheckOptions {
  const root = mkdtempSync(join(tmpdir(), "autopod-reboot-"));
  dirs.push(root);
  for (const [p, content] of Object.entries(files)) {
    mkdirSync(join(root, p, ".."), { recursive: true });
    writeFileSync(join(root, p), content);
  }
  return {
    paths: hostPaths({ root, sys: join(root, "sys"), proc: join(root, "proc") }),
    run: async () => {
      throw new Error("no program runs for a fake root");
    },
    which: () => null,
    lockTimeoutMs: 100,
    commandTimeoutMs: 1000,
  };
}

describe("rebootChecker on built fake hosts", () => {
  test("no sentinel: ok", async () => {
    const r = await rebootChecker.check(fakeHost({ "etc/hostname": "x" }));
    expect(r.verdict).toBe("ok");
  });
  test("/run/reboot-required with its .pkgs list", async () => {
    const opts = fakeHost({
      "run/reboot-required": "*** System restart required ***\n",
      "run/reboot-required.pkgs": "libc6\nlinux-image-6.1.0-18-amd64\nlibc6\n",
    });
    const r = await rebootChecker.check(opts);
    expect(r.verdict).toBe("reboot_required");
    expect(r.reasons).toEqual([{ kind: "file", path: join(opts.paths.root, "run/reboot-required"), detail: "packages: libc6, linux-image-6.1.0-18-amd64" }]);
  });
  test("/var/run/reboot-needed", async () => {
    const opts = fakeHost({ "var/run/reboot-needed": "" });
    const r = await rebootChecker.check(opts);
    expect(r.verdict).toBe("reboot_required");
    expect(r.reasons[0]).toEqual({ kind: "file", path: join(opts.paths.root, "var/run/reboot-needed") });
  });
  test("live patches are reported, and alone do not ask for a reboot", async () => {
    const opts = fakeHost({ "sys/kernel/livepatch/kpatch_6_1_0_18_1/enabled": "1\n", "sys/kernel/livepatch/kpatch_6_1_0_18_1/transition": "0\n" });
    const r = await rebootChecker.check(opts);
    expect(r.verdict).toBe("ok");
    expect(r.reasons).toEqual([{ kind: "livepatch", name: "kpatch_6_1_0_18_1", enabled: true, in_transition: false }]);
    expect(r.summary).toContain("kpatch_6_1_0_18_1");
  });
});

test("parseRebootRequiredPkgs and parseNeedsRestarting (needs-restarting's documented output; it does not run here)", () => {
  expect(parseRebootRequiredPkgs("a\n\nb\na\n")).toEqual(["a", "b"]);
  const out = [
    "Core libraries or services have been updated since boot-up:",
    "  * glibc",
    "  * kernel",
    "",
    "Reboot is required to fully utilize these updates.",
  ].join("\n");
  expect(parseNeedsRestarting(out)).toEqual(["glibc", "kernel"]);
});
