/**
 * Checkpoint and restore with real CRIU, on test hosts (network namespaces
 * with their own agents). Needs root and CRIU >= 4.2 (scripts/install-criu.sh).
 */
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BUN, isRoot, REPO, rootTest } from "./_support.ts";
import { TestHost } from "./_pods.ts";

const T = 120_000;
let host: TestHost;
let other: TestHost;
const scratch = mkdtempSync(join(tmpdir(), "autopod-ckpt-"));

beforeAll(async () => {
  if (!isRoot) return;
  host = await TestHost.start("c");
  other = await TestHost.start("d");
}, 60_000);
afterAll(async () => {
  await host?.dispose();
  await other?.dispose();
  rmSync(scratch, { recursive: true, force: true });
}, 60_000);

/** A shell loop holding its counter in memory and appending each value to a file. */
const COUNTER = ["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i >> /counter; sleep 0.02; done"];

async function counterLines(h: TestHost, pod: string): Promise<number[]> {
  const r = await h.cli(["exec", pod, "--", "cat", "/counter"]);
  expect(r.exitCode).toBe(0);
  return r.stdout.split("\n").filter(Boolean).map(Number);
}

/** 1, 2, 3, ... with no gap and no repeat. */
function expectContiguous(xs: number[]): void {
  const bad = xs.findIndex((x, i) => x !== i + 1);
  expect(bad === -1 ? "contiguous" : `line ${bad + 1} is ${xs[bad]}`).toBe("contiguous");
}

async function imageIds(h: TestHost): Promise<string[]> {
  return JSON.parse(await h.ok(["images", "--json"])).map((i: { id: string }) => i.id);
}

describe("checkpoint and restore", () => {
  rootTest(
    "a stop-checkpoint and restore lose nothing in memory or on disk",
    async () => {
      await host.run("count", COUNTER);
      await Bun.sleep(500);
      const id = await host.ok(["checkpoint", "count"]);
      expect(id).toMatch(/^[0-9a-f]{64}$/);
      expect((await host.pod("count")).state).toBe("checkpointed");
      await Bun.sleep(300); // nothing runs meanwhile
      await host.ok(["restore", id.slice(0, 12)]);
      expect((await host.pod("count")).state).toBe("running");
      await Bun.sleep(500);
      const xs = await counterLines(host, "count");
      expectContiguous(xs);
      expect(xs.length).toBeGreaterThan(20);
      const imgs = JSON.parse(await host.ok(["images", "--json"]));
      expect(imgs.find((i: { id: string }) => i.id === id).pod).toBe("count");
    },
    T,
  );

  rootTest(
    "--leave-running keeps the pod going, and a restore under a new name and address is an independent copy",
    async () => {
      await host.run("lr", COUNTER);
      await Bun.sleep(500);
      const out = JSON.parse(await host.ok(["checkpoint", "lr", "--leave-running", "--json"]));
      expect(out.leftRunning).toBe(true);
      expect(out.freezeMs).toBeGreaterThan(0);
      expect((await host.pod("lr")).state).toBe("running");
      const at = (await counterLines(host, "lr")).length;
      await host.ok(["restore", out.id, "--name", "lr2", "--ip", `${host.prefix}.77/24`]);
      const clone = await host.pod("lr2");
      expect(clone.state).toBe("running");
      expect(clone.address).toBe(`${host.prefix}.77/24`);
      await Bun.sleep(500);
      // Both go on, each in its own file: the copy from the checkpoint's value, the original without a gap.
      const a = await counterLines(host, "lr");
      const b = await counterLines(host, "lr2");
      expectContiguous(a);
      expectContiguous(b);
      expect(a.length).toBeGreaterThan(at);
      expect(b.length).toBeGreaterThan(10);
      // The image's own address is the running original's: a third copy needs its own.
      const taken = await host.cli(["restore", out.id, "--name", "lr3"]);
      expect(taken.exitCode).not.toBe(0);
      expect(taken.stderr).toContain("is in use by another pod");
      await host.ok(["restore", out.id, "--name", "lr3", "--ip", `${host.prefix}.78/24`]);
      expect((await host.pod("lr3")).address).toBe(`${host.prefix}.78/24`);
      const cg = readFileSync(`/proc/${(await host.pod("lr3")).pid}/cgroup`, "utf8");
      expect(cg).toContain("/lr3");
    },
    T,
  );

  rootTest(
    "a live TCP connection survives a checkpoint and restore, with no byte lost, repeated or reordered",
    async () => {
      const pod = await host.run("echo", ["nc", "-ll", "-p", "7000", "-e", "cat"]);
      const ip = pod.address.split("/")[0]!;
      await Bun.sleep(200);
      const client = Bun.spawn(["nsenter", `--net=/run/netns/${host.netns}`, "--", BUN, join(REPO, "test/fixtures/tcp-client.ts"), ip, "7000", "10"], {
        stdout: "pipe",
        stderr: "pipe",
      });
      await Bun.sleep(700);
      const id = await host.ok(["checkpoint", "echo"]);
      await Bun.sleep(300);
      await host.ok(["restore", id]);
      await Bun.sleep(1000);
      client.kill("SIGTERM");
      const report = JSON.parse((await new Response(client.stdout).text()).trim());
      // The whole report on failure: what was sent, received, and any error.
      expect(report).toMatchObject({ errors: [], closed: false });
      expect(report.sent).toBeGreaterThan(50);
      expect(report.received).toBe(report.sent);
    },
    T,
  );

  rootTest(
    "export, remove pod and image, gc, import and restore; and on another host under another name",
    async () => {
      await host.run("port", COUNTER);
      await Bun.sleep(300);
      const file = join(scratch, "port.img");
      const before = await counterLines(host, "port");
      expect(before.length).toBeGreaterThan(3);
      const id = (await host.ok(["checkpoint", "port", "--export", file])).split("\n")[0]!;
      expect(statSync(file).size).toBeGreaterThan(1000);
      await host.ok(["rm", "port"]);
      await host.ok(["image", "rm", id]);
      expect(await imageIds(host)).not.toContain(id);
      await host.ok(["image", "gc"]);
      const imported = await host.ok(["image", "import", file]);
      expect(imported).toBe(id);
      await host.ok(["restore", id]);
      await Bun.sleep(300);
      // What the pod had written before the checkpoint is still there, and it went on counting from where it stopped.
      const after = await counterLines(host, "port");
      expect(after.slice(0, before.length)).toEqual(before);
      expect(after.length).toBeGreaterThan(before.length);
      expectContiguous(after);

      // Another host: its own state directory (another root path), another name and subnet.
      await other.ok(["restore", "--import", file, "--trust", "--name", "moved", "--ip", `${other.prefix}.9/24`]);
      await Bun.sleep(300);
      const moved = await other.pod("moved");
      expect(moved.state).toBe("running");
      expect(moved.address).toBe(`${other.prefix}.9/24`);
      expectContiguous(await counterLines(other, "moved"));
    },
    T,
  );

  rootTest(
    "a stop-checkpoint hashes the page images while CRIU writes them (PageTail), and those hashes are the pages' own: the restore checks every page against them",
    async () => {
      await host.run("tail", ["/usr/local/bin/memhog", "64"]);
      await host.waitForLog("tail", /ready/);
      const logBytes = async () => (await host.cli(["logs", "tail"])).stdout.length;
      process.kill((await host.pod("tail")).pid!, "SIGUSR2");
      const sum = await host.waitForLog("tail", /sum \S+ pages \d+/);
      const cp = JSON.parse(await host.ok(["checkpoint", "tail", "--json"]));
      // CRIU wrote one page image for the one task, and 64 MiB of pages were hashed as they landed.
      expect(cp.pageTail).not.toBeNull();
      expect(cp.pageTail.files).toBe(1);
      expect(cp.pageTail.bytesDuringDump).toBeGreaterThan(0);
      expect(cp.pageTail.bytesDuringDump).toBeLessThanOrEqual(cp.logicalBytes);
      // The pages were new: the store adopted the page image whole, under the hashes the tail gave. Restore
      // links it back and hashes every page again while CRIU restores: a wrong hash fails the restore.
      const after = await logBytes();
      await host.ok(["restore", cp.id]);
      expect((await host.pod("tail")).state).toBe("running");
      process.kill((await host.pod("tail")).pid!, "SIGUSR2");
      expect(await host.waitForLog("tail", /sum \S+ pages \d+/, after)).toBe(sum);
      // A checkpoint that leaves the pod running hashes its pages after the dump instead.
      const lr = JSON.parse(await host.ok(["checkpoint", "tail", "--leave-running", "--json"]));
      expect(lr.pageTail).toBeNull();
      await host.ok(["rm", "--force", "tail"]);
    },
    T,
  );

  rootTest(
    "dedup: a second checkpoint after 1% of memory changed stores about 1% new bytes",
    async () => {
      await host.run("hog", ["/usr/local/bin/memhog", "64"]);
      await host.waitForLog("hog", /ready/);
      const first = JSON.parse(await host.ok(["checkpoint", "hog", "--leave-running", "--json"]));
      expect(first.newBytes).toBeGreaterThan(60 << 20);
      process.kill((await host.pod("hog")).pid!, "SIGUSR1");
      await Bun.sleep(300);
      const second = JSON.parse(await host.ok(["checkpoint", "hog", "--leave-running", "--json"]));
      expect(second.parent).toBe(first.id);
      const ratio = second.newBytes / first.newBytes;
      // 1% of the pages, plus CRIU's small metadata files.
      expect(ratio).toBeLessThan(0.03);
      expect(ratio).toBeGreaterThan(0.005);
      // Two pods of one base store the base once: the second pod's first image adds no base bytes.
      await host.run("hog2", ["sleep", "1000"]);
      const third = JSON.parse(await host.ok(["checkpoint", "hog2", "--json"]));
      expect(third.newBytes).toBeLessThan(1 << 20);
    },
    T,
  );
});

describe("volumes", () => {
  rootTest(
    "travel with the image by default, never overwrite a changed host directory, and can be excluded",
    async () => {
      const { mkdirSync, writeFileSync } = await import("node:fs");
      const vol = join(scratch, "vol-data");
      const shared = join(scratch, "vol-shared");
      mkdirSync(vol, { recursive: true });
      mkdirSync(shared, { recursive: true });
      writeFileSync(join(vol, "seed"), "from the host\n");
      await host.run(
        "vols",
        ["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i >> /data/counter; sleep 0.02; done"],
        ["--volume", `${vol}:/data`, "--volume", `${shared}:/shared`],
      );
      await Bun.sleep(400);
      const file = join(scratch, "vols.img");
      const id = (await host.ok(["checkpoint", "vols", "--exclude-volume", "/shared", "--export", file])).split("\n")[0]!;
      await host.ok(["restore", id]);
      await Bun.sleep(300);
      const lines = readFileSync(join(vol, "counter"), "utf8").split("\n").filter(Boolean).map(Number);
      expectContiguous(lines);
      // On another host, the image's host paths are not trusted: the volume's copy goes into that
      // agent's state directory, and the host directory is left alone.
      const r = await other.cli(["restore", "--import", file, "--trust", "--name", "vols-moved", "--ip", `${other.prefix}.20/24`], T);
      expect(r.exitCode).toBe(0);
      await Bun.sleep(300);
      const moved = await other.cli(["exec", "vols-moved", "--", "cat", "/data/seed"]);
      expect(moved.stdout).toBe("from the host\n");
      expectContiguous((await other.cli(["exec", "vols-moved", "--", "cat", "/data/counter"])).stdout.split("\n").filter(Boolean).map(Number));
      expect(r.stderr).toContain("of an image made on another host: the pod uses the image's copy at " + other.stateDir);
      expect(readFileSync(join(vol, "counter"), "utf8").split("\n").filter(Boolean).length).toBeGreaterThan(0);
    },
    T,
  );
});

describe("checkpoint and restore refuse bad input and keep the pod", () => {
  rootTest(
    "unknown or stopped pods, unknown images, taken names",
    async () => {
      let r = await host.cli(["checkpoint", "nosuch"]);
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toContain('"nosuch"');
      await host.run("short", ["sh", "-c", "exit 3"]);
      await host.waitForState("short", /exited/);
      r = await host.cli(["checkpoint", "short"]);
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toMatch(/no processes|exited/);
      r = await host.cli(["restore", "deadbeef"]);
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toContain('No image "deadbeef"');
      r = await host.cli(["restore", "not-hex!"]);
      expect(r.exitCode).not.toBe(0);
      await host.run("taken", ["sleep", "1000"]);
      const id = (await host.ok(["checkpoint", "taken", "--leave-running"])).split("\n")[0]!;
      r = await host.cli(["restore", id]);
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toContain('Pod "taken" already exists');
      r = await host.cli(["checkpoint", "taken", "--exclude-volume", "/nope"]);
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toContain('no volume at "/nope"');
      expect((await host.pod("taken")).state).toBe("running");
    },
    T,
  );

  rootTest(
    "a corrupted chunk: restore names the hash and the file and changes nothing",
    async () => {
      await host.run("bit", ["/usr/local/bin/memhog", "4"]);
      await host.waitForLog("bit", /ready/);
      const id = (await host.ok(["checkpoint", "bit"])).split("\n")[0]!;
      // Flip one bit in the middle of every pack file: some chunk of this image is hit.
      const packs = join(host.stateDir, "store", "packs");
      for (const f of readdirSync(packs)) {
        const p = join(packs, f);
        const size = statSync(p).size;
        if (size < 8192) continue;
        const fd = openSync(p, "r+");
        const b = new Uint8Array(1);
        readSync(fd, b, 0, 1, Math.floor(size / 2));
        b[0]! ^= 0x10;
        writeSync(fd, b, 0, 1, Math.floor(size / 2));
        closeSync(fd);
      }
      const r = await host.cli(["restore", id]);
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toMatch(/[0-9a-f]{64}/);
      expect(r.stderr).toMatch(/file|in "/);
      expect((await host.pod("bit")).state).toBe("checkpointed");
      expect(await imageIds(host)).toContain(id);
    },
    T,
  );
});
