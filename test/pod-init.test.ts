/**
 * The small static pod init (src/native/pod-init.c), run directly as the
 * agent runs it: a mount target inside the pod's root is walked without
 * following symlinks, so a symlink in a pod's base (here one planted after
 * the agent resolved its paths) cannot carry a volume, or a directory made
 * for one, outside the root.
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NATIVE_POD_INIT } from "../src/platform/linux/native-pod-init.ts";
import { sh } from "./_pods.ts";
import { isRoot, rootTest } from "./_support.ts";

const netns = `apinit-${process.pid}`;
let dir = "";

beforeAll(async () => {
  if (!isRoot) return;
  if (!existsSync(NATIVE_POD_INIT)) throw new Error(`${NATIVE_POD_INIT} is missing: run \`bun build.ts\` (it needs gcc)`);
  dir = mkdtempSync(join(tmpdir(), "autopod-pod-init-"));
  await sh(["ip", "netns", "add", netns]);
});

afterAll(async () => {
  if (!isRoot) return;
  await sh(["ip", "netns", "del", netns]);
  rmSync(dir, { recursive: true, force: true });
});

/** Run the init; its report lines on stderr (the launcher's and pid 1's), once both are gone. */
async function podInit(root: string, extra: string[]): Promise<string> {
  const argv = [NATIVE_POD_INIT, "--netns", `/run/netns/${netns}`, "--hostname", "t", "--copy", root, ...extra];
  argv.push("--proc", "/proc", "--dev", "/dev", "--tmp", "/tmp", "--keep-caps", "0", "--workdir", "/", "--log", "/pod.log", "--", "/bin/true");
  const p = Bun.spawn(argv, { stdio: ["ignore", "ignore", "pipe"], env: {} });
  const report = await new Response(p.stderr).text();
  await p.exited;
  return report;
}

rootTest("a volume's target behind a symlink of the pod's root is refused, and nothing is made outside the root", async () => {
  const root = join(dir, "root");
  const outside = join(dir, "outside");
  const volume = join(dir, "volume");
  for (const d of [root, outside, volume]) mkdirSync(d);
  symlinkSync(outside, join(root, "data"));
  const report = await podInit(root, ["--volume", volume, "/data/x", "rw", "dir"]);
  expect(report).toMatch(/^autopod-pod-init: pid \d+\n/);
  expect(report).toContain(`autopod-pod-init: error bind volume "${volume}" at "/data/x": "/data/x" is not a directory in the pod's root`);
  expect(existsSync(join(outside, "x"))).toBe(false);
});

rootTest("a parent path (..) in a mount target is refused", async () => {
  const root = join(dir, "root2");
  mkdirSync(root);
  const report = await podInit(root, ["--volume", join(dir, "volume"), "/../escaped", "rw", "dir"]);
  expect(report).toContain(`"/../escaped" leaves the pod's root`);
  expect(existsSync(join(dir, "escaped"))).toBe(false);
});
