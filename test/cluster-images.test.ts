/**
 * Images between cluster hosts, with real agents on a LAN: push and pull send
 * only what the other side lacks, a pushed image restores there with its
 * memory intact, and a push cut by the receiver's death leaves no image and
 * resumes with only what is missing. On a terminal both draw a progress
 * line; without one, or with --json, nothing but the result is written.
 */
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { TestCluster } from "./_cluster.ts";
import type { TestHost } from "./_pods.ts";
import { autopodInTerminal, rootTest } from "./_support.ts";

const T = 180_000;

async function memorySum(h: TestHost, pod: string): Promise<string> {
  const p = await h.pod(pod);
  const before = (await h.cli(["logs", pod])).stdout.length;
  process.kill(p.pid!, "SIGUSR2");
  return (await h.waitForLog(pod, /sum [0-9a-f]+/, before)).split(" ")[1]!;
}

async function imageIds(h: TestHost): Promise<string[]> {
  return JSON.parse(await h.ok(["images", "--json"])).map((i: { id: string }) => i.id);
}

describe("images between two hosts", () => {
  let lan: TestCluster;
  let a: TestHost;
  let b: TestHost;

  beforeAll(async () => {
    if (process.getuid?.() !== 0) return;
    lan = await TestCluster.start("ci", ["a", "b"]);
    [a, b] = lan.hosts as [TestHost, TestHost];
    await lan.formCluster("img", ["a", "b"]);
  }, 120_000);
  afterAll(async () => {
    await lan?.dispose();
  }, 120_000);

  rootTest(
    "push sends only what the peer lacks; the image restores there with its memory; pull brings one back",
    async () => {
      await a.run("hog", ["/usr/local/bin/memhog", "64"]);
      await a.waitForLog("hog", /ready/);
      const sum = await memorySum(a, "hog");
      const id = await a.ok(["checkpoint", "hog", "--leave-running"]);
      const first = JSON.parse(await a.ok(["image", "push", id.slice(0, 12), "--to", "b", "--json"]));
      expect(first).toMatchObject({ image: id, peer: "b", direction: "push", wasPresent: false });
      expect(first.chunksSent).toBe(first.chunksOffered);
      expect(first.bytesSent).toBeGreaterThan(60 << 20);
      expect(await imageIds(b)).toContain(id);

      // Again: nothing travels but the manifest.
      const again = JSON.parse(await a.ok(["image", "push", id, "--to", "b", "--json"]));
      expect(again).toMatchObject({ chunksSent: 0, wasPresent: true });
      expect(again.wireBytes).toBeLessThan(first.wireBytes / 50);

      // The next image of the same pod, after a little of its memory changed: few chunks travel.
      process.kill((await a.pod("hog")).pid!, "SIGUSR1"); // memhog rewrites 1% of its pages
      await Bun.sleep(200);
      const id2 = await a.ok(["checkpoint", "hog", "--leave-running"]);
      const delta = JSON.parse(await a.ok(["image", "push", id2, "--to", "b", "--json"]));
      expect(delta.chunksSent).toBeGreaterThan(0);
      expect(delta.bytesSent).toBeLessThan(first.bytesSent / 10);

      // Restored on b (at an address of b's pod subnet), the memory is what it was.
      const sum2 = await memorySum(a, "hog");
      await b.ok(["restore", id2, "--ip", `${b.prefix}.20/24`]);
      expect((await b.pod("hog")).state).toBe("running");
      expect(await memorySum(b, "hog")).toBe(sum2);
      expect(sum2).not.toBe(sum);

      // Pull the first image back onto a fresh store? a has it: nothing travels.
      const pulled = JSON.parse(await a.ok(["image", "pull", id, "--from", "b", "--json"]));
      expect(pulled).toMatchObject({ direction: "pull", chunksSent: 0, wasPresent: true });
      // b removes its copy of the first image and pulls it back from a: only the chunks it no longer has travel.
      await b.ok(["image", "rm", id]);
      await b.ok(["image", "gc"]);
      const back = JSON.parse(await b.ok(["image", "pull", id, "--from", "a", "--json"]));
      expect(back.wasPresent).toBe(false);
      expect(back.chunksSent).toBeGreaterThan(0);
      expect(back.chunksSent).toBeLessThan(back.chunksOffered);
      expect(await imageIds(b)).toContain(id);
      await b.ok(["rm", "--force", "hog"]);
    },
    T,
  );

  rootTest(
    "a push cut by the receiver's death leaves no image there; the retry sends only what is still missing",
    async () => {
      await a.run("big", ["/usr/local/bin/memhog", "384"]);
      await a.waitForLog("big", /ready/);
      const id = await a.ok(["checkpoint", "big", "--leave-running"]);
      await lan.shape(1, "400mbit");
      const push = a.cli(["image", "push", id, "--to", "b", "--json"]);
      // Kill b's agent once some of the image has arrived.
      const before = Date.now();
      await Bun.sleep(3000);
      await b.killAgent("SIGKILL");
      const cut = await push;
      expect(cut.exitCode).not.toBe(0);
      expect(Date.now() - before).toBeLessThan(60_000);
      await b.startAgent();
      expect(await imageIds(b)).not.toContain(id);
      const retry = JSON.parse(await a.ok(["image", "push", id, "--to", "b", "--json"]));
      expect(retry.chunksSent).toBeGreaterThan(0);
      expect(retry.chunksSent).toBeLessThan(retry.chunksOffered);
      expect(await imageIds(b)).toContain(id);
      console.log(`cut push: the retry sent ${retry.chunksSent} of ${retry.chunksOffered} chunks`);
    },
    T,
  );

  rootTest(
    "push and pull draw a progress line on a terminal, redrawn in place; nothing without a terminal or with --json",
    async () => {
      await a.run("tty", ["/usr/local/bin/memhog", "48"]);
      await a.waitForLog("tty", /ready/);
      const id = await a.ok(["checkpoint", "tty", "--leave-running"]);
      await a.ok(["rm", "--force", "tty"]);
      // A slow link, so the transfer lasts a few seconds.
      await lan.shape(0, "100mbit");
      await lan.shape(1, "100mbit");
      const dropOnB = async () => {
        await b.ok(["image", "rm", id]);
        await b.ok(["image", "gc"]);
      };
      try {
        const t0 = performance.now();
        const push = await autopodInTerminal(["image", "push", id, "--to", "b"], { env: a.env });
        const seconds = (performance.now() - t0) / 1000;
        expect(push.exitCode).toBe(0);
        // The terminal's "erase to the end of the line", made visible.
        const shown = push.output.replaceAll("\x1b[K", "<EL>");
        const draws = shown.split("\r").filter((d) => d.startsWith("sending"));
        // Redrawn in place (carriage returns, erase to the end of the line), with bytes of the total, rate and time left.
        expect(draws.length).toBeGreaterThanOrEqual(3);
        expect(draws.length).toBeLessThanOrEqual(seconds * 10 + 5);
        expect(shown).toMatch(/sending {2}[0-9.]+ [KMG]?i?B of [0-9.]+ MiB \([0-9]+%\) {2}[0-9.]+ [KMG]?i?B\/s {2}ETA [0-9]+s<EL>/);
        // The line is erased before the result is printed.
        expect(shown).toMatch(/\r<EL>pushed image [0-9a-f]{12} to b: /);

        await dropOnB();
        const pull = await autopodInTerminal(["image", "pull", id, "--from", "a"], { env: b.env });
        expect(pull.exitCode).toBe(0);
        expect(pull.output).toContain("\rreceiving  ");
        expect(pull.output).toMatch(/pulled image [0-9a-f]{12} from a: /);

        // Without a terminal: the result alone, on stdout.
        await dropOnB();
        const piped = await b.cli(["image", "pull", id, "--from", "a"], 120_000);
        expect(piped.exitCode).toBe(0);
        expect(piped.stderr).toBe("");
        expect(piped.stdout).not.toContain("\r");
        expect(piped.stdout).toMatch(/^pulled image [0-9a-f]{12} from a: [^\n]*\n$/);

        // --json on a terminal: the report alone.
        await dropOnB();
        const json = await autopodInTerminal(["image", "push", id, "--to", "b", "--json"], { env: a.env });
        expect(json.exitCode).toBe(0);
        expect(json.output).not.toContain("sending");
        expect(JSON.parse(json.output.replaceAll("\r\n", "\n"))).toMatchObject({ image: id, direction: "push", wasPresent: false });
      } finally {
        await lan.shape(0, "10gbit");
        await lan.shape(1, "10gbit");
      }
    },
    T,
  );
});
