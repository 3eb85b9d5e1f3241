import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { criuPatchSetGitId } from "../../criu-installer.ts";
import { chooseCriu } from "./criu-choose.ts";

const work = mkdtempSync(join(tmpdir(), "autopod-criu-choose-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

let n = 0;
/** An executable that answers `--version` as a criu of this version and GitID would. */
function fakeCriu(version: string, gitId: string | null): string {
  const p = join(work, `criu-${n++}`);
  writeFileSync(p, `#!/bin/sh\necho "Version: ${version}"\n${gitId ? `echo "GitID: ${gitId}"\n` : ""}`, { mode: 0o755 });
  return p;
}

/** A prefix where `autopod criu install` has put a criu. */
function bundledPrefix(): string {
  const prefix = join(work, `bundled-${n++}`);
  mkdirSync(join(prefix, "current/bin"), { recursive: true });
  writeFileSync(join(prefix, "current/bin/criu"), `#!/bin/sh\necho "Version: 4.2.1"\necho "GitID: ${criuPatchSetGitId()}"\n`, { mode: 0o755 });
  return prefix;
}

const K = "6.18.44";

describe("chooseCriu", () => {
  test("a good system CRIU comes first, even with autopod's own installed", () => {
    const sys = fakeCriu("4.2.1", criuPatchSetGitId());
    const c = chooseCriu({ kernelRelease: K, systemCandidates: [sys], bundledPrefix: bundledPrefix() });
    expect(c).toEqual({ path: sys, source: "system", why: `the system's CRIU 4.2.1 is new enough for Linux ${K} and carries autopod's patches` });
  });

  test("a system CRIU too old for the kernel, or without autopod's patches, gives way to the bundled one", () => {
    const prefix = bundledPrefix();
    const old = fakeCriu("3.17.1", null);
    const unpatched = fakeCriu("4.2.1", null);
    const c = chooseCriu({ kernelRelease: K, systemCandidates: [old, unpatched], bundledPrefix: prefix });
    expect(c.path).toBe(join(prefix, "current/bin/criu"));
    expect(c.source).toBe("bundled");
    expect(c.why).toBe(
      `the CRIU autopod brought (autopod criu install), because ${old} is version 3.17.1 (Linux ${K} needs >= 4.2); ${unpatched} (4.2.1) lacks autopod's CRIU patches (GitID none)`,
    );
    // On an older kernel 3.17 is new enough, but still lacks the patches.
    expect(chooseCriu({ kernelRelease: "6.1.0", systemCandidates: [old], bundledPrefix: prefix }).source).toBe("bundled");
  });

  test("without the bundled one, the system's criu is still returned (doctor says what is wrong with it); with none, null", () => {
    const old = fakeCriu("3.17.1", null);
    const none = join(work, "none");
    expect(chooseCriu({ kernelRelease: K, systemCandidates: [old], bundledPrefix: none })).toEqual({
      path: old,
      source: "system",
      why: `the only CRIU here: ${old} is version 3.17.1 (Linux ${K} needs >= 4.2)`,
    });
    expect(chooseCriu({ kernelRelease: K, systemCandidates: [join(work, "missing")], bundledPrefix: none })).toEqual({
      path: null,
      source: null,
      why: "no criu in /usr/local/sbin or PATH, and autopod's own is not installed",
    });
    expect(chooseCriu({ kernelRelease: K, systemCandidates: [], bundledPrefix: bundledPrefix() }).why).toBe(
      "the CRIU autopod brought (autopod criu install), because there is no system CRIU",
    );
  });

  test("a configured criu is used as it is, or reported missing", () => {
    const any = fakeCriu("3.17.1", null);
    expect(chooseCriu({ configured: any, kernelRelease: K, bundledPrefix: bundledPrefix() })).toMatchObject({ path: any, source: "configured" });
    expect(chooseCriu({ configured: join(work, "nope"), kernelRelease: K })).toEqual({
      path: null,
      source: null,
      why: `criu not found at configured path "${join(work, "nope")}"`,
    });
  });
});
