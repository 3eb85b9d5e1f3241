/**
 * The way out of a full disk works on a full disk: with the agent's state on a
 * small file system filled to the last byte, `image rm` and `image gc` succeed
 * and give the space back, and nothing else is lost.
 */
import { afterAll, beforeAll, expect } from "bun:test";
import { closeSync, mkdirSync, openSync, statfsSync, writeSync } from "node:fs";
import { join } from "node:path";
import { sh, TestHost } from "./_pods.ts";
import { isRoot, rootTest } from "./_support.ts";

const T = 180_000;
let host: TestHost;
beforeAll(async () => {
  if (!isRoot) return;
  host = await TestHost.start("f");
  // The agent again, its state on a 128 MiB tmpfs (dispose unmounts it).
  await host.killAgent("SIGTERM");
  const state = `${host.stateDir}-small`;
  mkdirSync(state);
  const m = await sh(["mount", "-t", "tmpfs", "-o", "size=128m,mode=0700", "tmpfs", state]);
  if (m.exitCode !== 0) throw new Error(`mount tmpfs: ${m.stderr}`);
  const { readFileSync, writeFileSync } = await import("node:fs");
  writeFileSync(host.configPath, readFileSync(host.configPath, "utf8").replace(`state_dir = "${host.stateDir}"`, `state_dir = "${state}"`));
  (host as { stateDir: string }).stateDir = state;
  await host.startAgent();
}, 60_000);
afterAll(async () => {
  await host?.dispose();
}, 120_000);

/** Write zeros until the file system says ENOSPC, down to single bytes. */
function fill(dir: string): void {
  const fd = openSync(join(dir, "filler"), "w");
  try {
    for (const size of [1 << 20, 4096, 1]) {
      const buf = new Uint8Array(size);
      for (;;) {
        try {
          writeSync(fd, buf);
        } catch (e) {
          if ((e as { code?: string }).code === "ENOSPC") break;
          throw e;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
}

rootTest(
  "image rm and image gc succeed on a 100% full state file system, and free its space",
  async () => {
    await host.run("big", ["sh", "-c", "head -c 8000000 /dev/urandom > /tmp/noise; sleep 1000"]);
    await Bun.sleep(1500);
    const id = (await host.ok(["checkpoint", "big", "--leave-running"], T)).split("\n")[0]!;
    await host.ok(["rm", "--force", "big"]);
    fill(host.stateDir);
    expect(statfsSync(host.stateDir).bavail).toBe(0);

    const rm = await host.cli(["image", "rm", id.slice(0, 12)]);
    expect(rm.stderr).toBe("");
    expect(rm.exitCode).toBe(0);
    const gc = await host.cli(["image", "gc", "--json"]);
    expect(gc.stderr).toBe("");
    expect(gc.exitCode).toBe(0);
    const r = JSON.parse(gc.stdout);
    expect(r.packBytesAfter).toBeLessThan(r.packBytesBefore);
    expect(statfsSync(host.stateDir).bavail * statfsSync(host.stateDir).bsize).toBeGreaterThan(10 << 20);
    expect(await host.ok(["images", "--json"])).toBe("[]");
    // The agent lives and works: the room is there for the next pod.
    await host.run("after", ["sleep", "1000"]);
  },
  T,
);
