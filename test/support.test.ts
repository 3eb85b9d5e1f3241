/** The test helpers refuse to test a stale binary: whyStale compares dist/autopod with the sources. */
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DIST, whyStale } from "./_support.ts";

const repo = mkdtempSync(join(tmpdir(), "autopod-support-"));
afterAll(() => rmSync(repo, { recursive: true, force: true }));

test("a binary older than any source file is stale; a newer one is not; a missing one is", () => {
  mkdirSync(join(repo, "src/deep/er"), { recursive: true });
  mkdirSync(join(repo, "dist"));
  const dist = join(repo, "dist/autopod");
  expect(whyStale(dist, repo)).toContain("does not exist");
  writeFileSync(join(repo, "src/main.ts"), "");
  writeFileSync(join(repo, "src/deep/er/x.ts"), "");
  writeFileSync(join(repo, "build.ts"), "");
  writeFileSync(dist, "");
  const t = Date.now() / 1000;
  for (const f of ["src/main.ts", "src/deep/er/x.ts", "build.ts"]) utimesSync(join(repo, f), t - 100, t - 100);
  utimesSync(dist, t - 50, t - 50);
  expect(whyStale(dist, repo)).toBeNull();
  // A file deep in src/ changed after the build.
  utimesSync(join(repo, "src/deep/er/x.ts"), t - 10, t - 10);
  expect(whyStale(dist, repo)).toContain("older than the sources");
  utimesSync(dist, t, t);
  expect(whyStale(dist, repo)).toBeNull();
  // build.ts changed.
  utimesSync(join(repo, "build.ts"), t + 5, t + 5);
  expect(whyStale(dist, repo)).toContain("older than the sources");
});

const fromSource = Boolean(process.env.AUTOPOD_TEST_FROM_SOURCE);
if (fromSource) console.warn("SKIP: AUTOPOD_TEST_FROM_SOURCE is set: the sources are tested, not dist/autopod");
test.skipIf(fromSource)("loading the helpers left this worktree's dist/autopod built from its current sources", () => {
  expect(whyStale()).toBeNull();
  expect(statSync(DIST).size).toBeGreaterThan(1 << 20);
});
