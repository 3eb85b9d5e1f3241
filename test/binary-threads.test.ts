/**
 * The compiled binary hashes and copies chunks on the threads it carries
 * (src/store/chunk-thread.ts, bundled by build.ts as an entrypoint of its
 * own), not on a source file it happens to find: it is built here from a copy
 * of the tree that is deleted before the agent starts. Then a stop-checkpoint
 * (its page images hashed while CRIU writes them) and a restore (its page
 * images copied and verified) of a pod with 64 MiB of memory.
 */
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TestHost } from "./_pods.ts";
import { BUN, isRoot, REPO, rootTest } from "./_support.ts";

const T = 180_000;
const scratch = mkdtempSync(join(tmpdir(), "autopod-threads-"));
const copy = join(scratch, "tree");
const binary = join(scratch, "bin", "autopod");
let host: TestHost;

beforeAll(async () => {
  if (!isRoot) return;
  mkdirSync(copy);
  for (const name of ["src", "scripts", "build.ts", "package.json", "tsconfig.json"]) cpSync(join(REPO, name), join(copy, name), { recursive: true });
  symlinkSync(join(REPO, "node_modules"), join(copy, "node_modules"));
  const built = Bun.spawnSync([BUN, "build.ts", "--outfile", binary], { cwd: copy, env: { ...process.env, AUTOPOD_COMMIT: "threads-test" }, stderr: "pipe" });
  if (built.exitCode !== 0) throw new Error(`build.ts failed: ${built.stderr.toString()}`);
  rmSync(copy, { recursive: true, force: true });
  host = await TestHost.start("t");
  await host.killAgent("SIGTERM");
  await host.startAgent(binary);
}, 120_000);
afterAll(async () => {
  await host?.dispose();
  rmSync(scratch, { recursive: true, force: true });
}, 60_000);

/** memhog's checksum of its memory, asked for with SIGUSR2. */
async function memorySum(pod: string): Promise<string> {
  const p = await host.pod(pod);
  const before = (await host.cli(["logs", pod])).stdout.length;
  process.kill(p.pid!, "SIGUSR2");
  return (await host.waitForLog(pod, /sum [0-9a-f]+/, before)).split(" ")[1]!;
}

describe("the compiled binary's hashing threads", () => {
  rootTest(
    "checkpoint and restore with no source tree to fall back on",
    async () => {
      expect(existsSync(join(copy, "src/store/chunk-thread.ts"))).toBe(false);
      await host.run("mem", ["/usr/local/bin/memhog", "64"]);
      await host.waitForLog("mem", /ready/);
      const sum = await memorySum("mem");
      const out = JSON.parse(await host.ok(["checkpoint", "mem", "--json"]));
      expect(out.id).toMatch(/^[0-9a-f]{64}$/);
      await host.ok(["restore", out.id]);
      expect((await host.pod("mem")).state).toBe("running");
      expect(await memorySum("mem")).toBe(sum);
    },
    T,
  );
});
