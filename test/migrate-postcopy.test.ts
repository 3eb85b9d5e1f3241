/**
 * Post-copy migration between real agents on a LAN (routed pod network): the
 * pod's memory stays on the source while the destination already runs it, and
 * arrives through the agents' page link (CRIU's lazy pages over mutual TLS).
 * A pod with memory (memhog), a counter and an echo server goes A -> B -> A
 * while a client streams numbered lines to it: nothing lost, repeated or
 * reordered, the connection kept, the memory's checksum the same. Then the
 * link is cut, and agents are killed, during the page pull: the pod ends
 * running on the source only, and a retry succeeds.
 */
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { readFileSync } from "node:fs";
import { TestCluster } from "./_cluster.ts";
import type { TestHost } from "./_pods.ts";
import { isRoot, rootTest } from "./_support.ts";
import { clientReport, hitsOf, setFailpoint, startClient, waitUntil } from "./_migrate.ts";

const T = 300_000;
const FAILPOINTS = ["--failpoints", ""];
/** The pod's memory: enough that the pull takes seconds on a shaped link. */
const MIB = 64;

let lan: TestCluster;
let a: TestHost;
let b: TestHost;
let podCount = 0;

beforeAll(async () => {
  if (!isRoot) return;
  lan = await TestCluster.start("pc", ["a", "b"], { routed: true });
  [a, b] = lan.hosts as [TestHost, TestHost];
  await lan.formCluster("post", ["a", "b"]);
  for (const h of [a, b]) {
    await h.killAgent("SIGTERM");
    await h.startAgent(undefined, {}, FAILPOINTS);
  }
}, 180_000);
afterAll(async () => {
  await lan?.dispose();
}, 120_000);

/** memhog's memory, a counter into /count every 10 ms, and an echo server on port 7000. */
async function startPod(h: TestHost): Promise<{ name: string; ip: string }> {
  const name = `pc${++podCount}`;
  const pod = await h.run(name, [
    "sh",
    "-c",
    `/usr/local/bin/memhog ${MIB} & i=0; while :; do i=$((i+1)); echo $i >> /count; usleep 10000; done & exec nc -ll -p 7000 -e cat`,
  ]);
  await h.waitForLog(name, /ready/, 0, 60_000);
  return { name, ip: pod.address.split("/")[0]! };
}

/** memhog's checksum of its memory, asked through SIGUSR2 (it answers in the pod's log). */
async function memorySum(h: TestHost, name: string): Promise<string> {
  const before = (await h.cli(["logs", name])).stdout.length;
  await h.ok(["exec", name, "sh", "-c", "kill -USR2 $(pidof memhog)"]);
  return (await h.waitForLog(name, /sum \S+ pages \d+/, before, 120_000)).split(" ")[1]!;
}

async function whereIs(name: string): Promise<{ a: string | null; b: string | null }> {
  const on = async (h: TestHost) => (await h.pods()).find((p) => p.name === name)?.state ?? null;
  return { a: await on(a), b: await on(b) };
}

/** The process is gone, or a zombie nobody reaped yet (this VM's init reaps late). */
function isGone(pid: number): boolean {
  try {
    return /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return true;
  }
}

/** The counter's file has 1..n, each once, in order; and it still grows. */
async function expectCounting(h: TestHost, name: string): Promise<void> {
  const check = (text: string) => {
    const lines = text.trim().split("\n").map(Number);
    lines.forEach((n, i) => {
      if (n !== i + 1) throw new Error(`/count line ${i + 1} is ${n}`);
    });
    return lines.length;
  };
  const n = check(await h.ok(["exec", name, "cat", "/count"]));
  await Bun.sleep(300);
  expect(check(await h.ok(["exec", name, "cat", "/count"]))).toBeGreaterThan(n);
}

/** Pause the source where the destination runs its copy and pulls its pages; resolves once there. */
async function pausedInPull(): Promise<() => Promise<void>> {
  await setFailpoint(a, "migrate.pulling", "1*pause->off");
  await waitUntil("the page pull under way", async () => (await hitsOf(a, "migrate.pulling")) >= 1, 120_000);
  return () => setFailpoint(a, "migrate.pulling", "off");
}

/** The pod runs on A only (B killed and removed its copy), counting, with the memory it had; then a post-copy retry moves it. */
async function expectOnAThenRetry(name: string, sum: string): Promise<void> {
  await waitUntil(
    "the pod on A only",
    async () => {
      const w = await whereIs(name);
      return w.a === "running" && w.b === null;
    },
    90_000,
  );
  await expectCounting(a, name);
  expect(await memorySum(a, name)).toBe(sum);
  const r = JSON.parse(await a.ok(["migrate", name, "--to", "b", "--mode", "postcopy", "--json"], 180_000));
  expect(r.mode).toBe("postcopy");
  expect(await whereIs(name)).toEqual({ a: null, b: "running" });
  await expectCounting(b, name);
  expect(await memorySum(b, name)).toBe(sum);
  await b.ok(["rm", "--force", name]);
}

describe("autopod migrate --mode postcopy", () => {
  rootTest(
    "A -> B -> A with a client streaming throughout: nothing lost, the connection kept, the memory the same",
    async () => {
      const { name, ip } = await startPod(a);
      const sum = await memorySum(a, name);
      const client = startClient(lan.client, ip);
      let report: Awaited<ReturnType<typeof clientReport>>;
      try {
        await Bun.sleep(700);
        const there = JSON.parse(await a.ok(["migrate", name, "--to", "b", "--mode", "postcopy", "--json"], 180_000));
        if (process.env.MIGRATE_DEBUG) console.error("there", JSON.stringify(there));
        expect(there.mode).toBe("postcopy");
        expect(there.rounds).toEqual([]);
        expect(there.isResumeConfirmed).toBe(true);
        // The memory came through the page link, not in the image.
        expect(there.pages.bytes).toBeGreaterThan(MIB << 20);
        expect(there.final.bytesOffered).toBeLessThan(MIB << 20);
        expect(await whereIs(name)).toEqual({ a: null, b: "running" });
        expect((await b.pod(name)).address).toBe(`${ip}/32`);
        expect(await memorySum(b, name)).toBe(sum);
        await Bun.sleep(1000);
        const back = JSON.parse(await b.ok(["migrate", name, "--to", "a", "--mode", "postcopy", "--json"], 180_000));
        if (process.env.MIGRATE_DEBUG) console.error("back", JSON.stringify(back));
        expect(back.isResumeConfirmed).toBe(true);
        expect(await whereIs(name)).toEqual({ a: "running", b: null });
        await Bun.sleep(1000);
      } finally {
        report = await clientReport(client);
      }
      if (process.env.MIGRATE_DEBUG) console.error("client", JSON.stringify(report));
      expect(report.errors).toEqual([]);
      expect(report.closed).toBe(false);
      expect(report.sent).toBeGreaterThan(100);
      expect(report.received).toBe(report.sent);
      await expectCounting(a, name);
      expect(await memorySum(a, name)).toBe(sum);
      await a.ok(["rm", "--force", name]);
    },
    T,
  );

  rootTest(
    "--max-downtime that pre-copy rounds cannot meet: without --mode the pod goes by post-copy instead of a refusal",
    async () => {
      const { name } = await startPod(a);
      const sum = await memorySum(a, name);
      const r = JSON.parse(await a.ok(["migrate", name, "--to", "b", "--max-rounds", "1", "--max-downtime", "1", "--json"], 180_000));
      expect(r.mode).toBe("postcopy");
      expect(r.rounds.length).toBe(1);
      expect(r.pages.bytes).toBeGreaterThan(0);
      expect(await whereIs(name)).toEqual({ a: null, b: "running" });
      expect(await memorySum(b, name)).toBe(sum);
      await b.ok(["rm", "--force", name]);
    },
    T,
  );

  rootTest(
    "the link cut for good during the page pull: B kills its copy, A runs its own on, a retry moves it",
    async () => {
      const { name } = await startPod(a);
      const sum = await memorySum(a, name);
      // 64 MiB at 20 Mbit/s: about 27 s of pull, cut right after it starts.
      await lan.shape(1, "20mbit");
      let r: Awaited<ReturnType<typeof a.cli>>;
      try {
        const migrating = a.cli(["migrate", name, "--to", "b", "--mode", "postcopy", "--json"], 180_000);
        const release = await pausedInPull();
        await lan.link(1, false);
        await release();
        r = await migrating;
        // Both ends gave up on the silent link: B's copy died before A's went on.
        await waitUntil("B's copy gone", async () => (await whereIs(name)).b === null, 60_000);
      } finally {
        await lan.link(1, true);
        await lan.shape(1, "10gbit");
      }
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toContain("the pod runs on here");
      await expectOnAThenRetry(name, sum);
    },
    T,
  );

  rootTest(
    "the destination agent killed (SIGKILL) during the page pull: A runs its own copy on; B's restarted agent drops its copy; a retry moves it",
    async () => {
      const { name } = await startPod(a);
      const sum = await memorySum(a, name);
      await lan.shape(1, "20mbit");
      let r: Awaited<ReturnType<typeof a.cli>>;
      try {
        const migrating = a.cli(["migrate", name, "--to", "b", "--mode", "postcopy", "--json"], 180_000);
        const release = await pausedInPull();
        const copy = (await b.pod(name)).pid as number;
        b.agent!.kill("SIGKILL");
        await b.agent!.exited;
        b.agent = null;
        // Its guard kills the copy at once (its pages would read as zeros now), while A still holds its own
        // stopped: never two copies running. Without the guard it ran on until B's agent came back.
        await waitUntil("B's copy killed by its guard while A still holds its own", async () => isGone(copy), 10_000);
        await release();
        r = await migrating;
        await b.startAgent(undefined, {}, FAILPOINTS);
      } finally {
        await lan.shape(1, "10gbit");
      }
      expect(r.exitCode).not.toBe(0);
      await expectOnAThenRetry(name, sum);
    },
    T,
  );

  rootTest(
    "the source agent killed (SIGKILL) during the page pull: on restart the pod runs on exactly one host",
    async () => {
      const { name } = await startPod(a);
      const sum = await memorySum(a, name);
      await lan.shape(1, "20mbit");
      try {
        const migrating = a.cli(["migrate", name, "--to", "b", "--mode", "postcopy", "--json"], 180_000);
        const release = await pausedInPull();
        a.agent!.kill("SIGKILL");
        await a.agent!.exited;
        a.agent = null;
        await migrating;
        void release;
        await a.startAgent(undefined, {}, FAILPOINTS);
      } finally {
        await lan.shape(1, "10gbit");
      }
      // The pull had not finished: the source never committed, so its copy is the pod.
      await expectOnAThenRetry(name, sum);
    },
    T,
  );
});
