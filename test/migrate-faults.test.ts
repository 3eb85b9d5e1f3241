/**
 * Live migration under faults of the link, the destination's disk and the
 * data itself (see test/migrate.test.ts for agents killed at each phase): the
 * link between the hosts cut during a round, during the final delta and while
 * the destination restores, for a few seconds or for good; the destination's
 * disk filled during a round and at the freeze; a chunk corrupted by the
 * source in a round and in the final delta. Each ends with the pod running on
 * exactly one host, its counter without gap or repeat, and a retry moves it.
 */
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { closeSync, cpSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { TestCluster } from "./_cluster.ts";
import { sh, type TestHost } from "./_pods.ts";
import type { FailpointName } from "../src/debug/failpoints.ts";
import { isRoot, rootTest } from "./_support.ts";
import { hitsOf, setFailpoint, waitUntil } from "./_migrate.ts";

const T = 300_000;
const FAILPOINTS = ["--failpoints", ""];
/** The destination's state file system: room for the pod with pre-flight's headroom, small enough to fill. */
const B_STATE_MIB = 400;

let lan: TestCluster;
let a: TestHost;
let b: TestHost;
let podCount = 0;

beforeAll(async () => {
  if (!isRoot) return;
  lan = await TestCluster.start("mf", ["a", "b"], { routed: true });
  [a, b] = lan.hosts as [TestHost, TestHost];
  // B's state on a small tmpfs (dispose unmounts it), before it joins the cluster.
  await b.killAgent("SIGTERM");
  const small = `${b.stateDir}-small`;
  mkdirSync(small);
  const m = await sh(["mount", "-t", "tmpfs", "-o", `size=${B_STATE_MIB}m,mode=0700`, "tmpfs", small]);
  if (m.exitCode !== 0) throw new Error(`mount tmpfs: ${m.stderr}`);
  cpSync(b.stateDir, small, { recursive: true });
  writeFileSync(b.configPath, readFileSync(b.configPath, "utf8").replace(`state_dir = "${b.stateDir}"`, `state_dir = "${small}"`));
  (b as { stateDir: string }).stateDir = small;
  await b.startAgent();
  await lan.formCluster("migf", ["a", "b"]);
  for (const h of [a, b]) {
    await h.killAgent("SIGTERM");
    await h.startAgent(undefined, {}, FAILPOINTS);
  }
}, 180_000);
afterAll(async () => {
  await lan?.dispose();
}, 120_000);

/** Set `name` to pause, and resolve once a hit waits there; `release` lets it go on. */
async function pauseAt(h: TestHost, name: FailpointName): Promise<{ reached: Promise<void>; release: () => Promise<void> }> {
  await setFailpoint(h, name, "1*pause->off");
  const reached = waitUntil(`failpoint ${name} reached`, async () => (await hitsOf(h, name)) >= 1, 120_000);
  return { reached, release: () => setFailpoint(h, name, "off") };
}

/** A pod counting into /count (its root) every 10 ms; `mib` MiB of random memory beside it. */
async function startCounter(h: TestHost, mib = 0): Promise<string> {
  const name = `mf${++podCount}`;
  const hog = mib > 0 ? `/usr/local/bin/memhog ${mib} & ` : "";
  await h.run(name, ["sh", "-c", `${hog}i=0; while :; do i=$((i+1)); echo $i >> /count; usleep 10000; done`]);
  if (mib > 0) await h.waitForLog(name, /ready/, 0, 60_000);
  return name;
}

async function whereIs(name: string): Promise<{ a: string | null; b: string | null }> {
  const on = async (h: TestHost) => (await h.pods()).find((p) => p.name === name)?.state ?? null;
  return { a: await on(a), b: await on(b) };
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

/** The pod runs on A only (the destination dropped whatever it held), its counter intact; then a retry moves it to B. */
async function expectOnAThenRetry(name: string): Promise<void> {
  await waitUntil("the pod on A only", async () => {
    const w = await whereIs(name);
    return w.a === "running" && w.b === null;
  });
  await expectCounting(a, name);
  await a.ok(["migrate", name, "--to", "b", "--max-rounds", "2"], 180_000);
  expect(await whereIs(name)).toEqual({ a: null, b: "running" });
  await expectCounting(b, name);
  await b.ok(["rm", "--force", name]);
}

/** Bytes the LAN sent B so far (its uplink's root-side end: uplink 0 is the client's, 1 A's, 2 B's). */
function bytesIntoB(): number {
  return Number(readFileSync(`/sys/class/net/${lan.bridge.slice(0, 10)}u2/statistics/tx_bytes`, "utf8"));
}

/** Wait until a round's chunks flow: 8 MiB more into B (the dump and the questions before come first). */
async function pushUnderWay(): Promise<void> {
  const from = bytesIntoB();
  await waitUntil("8 MiB of the round on its way to B", async () => bytesIntoB() - from > 8 << 20);
}

/**
 * Drop every IP packet in and out of B's uplink (its ARP still answers, so the source's TCP retries
 * for many minutes rather than failing on an unreachable host, as with the link down).
 */
async function blackholeB(isOn: boolean): Promise<void> {
  const script = isOn
    ? 'table inet mfcut {\n chain in { type filter hook input priority -300; policy accept; iifname "lan0" drop; }\n chain out { type filter hook output priority -300; policy accept; oifname "lan0" drop; }\n}\n'
    : "delete table inet mfcut\n";
  const p = Bun.spawn(["ip", "netns", "exec", b.netns, "nft", "-f", "-"], { stdin: new TextEncoder().encode(script), stderr: "pipe" });
  if ((await p.exited) !== 0 && isOn) throw new Error(`nft: ${await new Response(p.stderr).text()}`);
}

/** Write until B's state file system is full, down to single bytes. */
function fillB(): string {
  const path = join(b.stateDir, "filler");
  const fd = openSync(path, "w");
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
  return path;
}

describe("autopod migrate, the link cut", () => {
  rootTest(
    "for a few seconds mid-round: the transfer resumes and the migration completes",
    async () => {
      const name = await startCounter(a, 48);
      // 48 MiB at 40 Mbit/s: about 10 s of round, cut after 2.
      await lan.shape(1, "40mbit");
      try {
        const p = await pauseAt(a, "migrate.round");
        const migrating = a.cli(["migrate", name, "--to", "b", "--max-rounds", "2", "--json"], 180_000);
        await p.reached;
        await p.release();
        await pushUnderWay();
        await lan.link(1, false);
        await Bun.sleep(4000);
        await lan.link(1, true);
        const r = await migrating;
        expect(r.exitCode).toBe(0);
        expect(JSON.parse(r.stdout).isResumeConfirmed).toBe(true);
      } finally {
        await lan.link(1, true);
        await lan.shape(1, "10gbit");
      }
      expect(await whereIs(name)).toEqual({ a: null, b: "running" });
      await expectCounting(b, name);
      await b.ok(["rm", "--force", name]);
    },
    T,
  );

  rootTest(
    "for good mid-round (every packet dropped): the migration gives up, the pod runs on here, a retry moves it",
    async () => {
      const name = await startCounter(a, 48);
      await lan.shape(1, "40mbit");
      let r: Awaited<ReturnType<typeof a.cli>>;
      try {
        const p = await pauseAt(a, "migrate.round");
        const migrating = a.cli(["migrate", name, "--to", "b", "--max-rounds", "2"], 180_000);
        await p.reached;
        await p.release();
        await pushUnderWay();
        await blackholeB(true);
        r = await migrating;
      } finally {
        await blackholeB(false);
        await lan.shape(1, "10gbit");
      }
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toContain("took no data for 30 s");
      expect(r.stderr).toContain("the pod runs on here");
      await expectOnAThenRetry(name);
    },
    T,
  );

  rootTest(
    "at the final delta: the source's stopped copy continues, a retry moves it",
    async () => {
      const name = await startCounter(a);
      const p = await pauseAt(a, "migrate.frozen");
      const migrating = a.cli(["migrate", name, "--to", "b", "--max-rounds", "1"], 180_000);
      let r: Awaited<ReturnType<typeof a.cli>>;
      try {
        await p.reached;
        await lan.link(1, false);
        await p.release();
        r = await migrating;
      } finally {
        await lan.link(1, true);
      }
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toContain("the pod runs on here");
      await expectOnAThenRetry(name);
    },
    T,
  );

  rootTest(
    "while the destination restores: the source gives up once the peer stops answering, the destination drops its copy once it can ask",
    async () => {
      const name = await startCounter(a);
      const p = await pauseAt(b, "migrate.dest-prepared");
      const t0 = performance.now();
      const migrating = a.cli(["migrate", name, "--to", "b", "--max-rounds", "1"], 180_000);
      let r: Awaited<ReturnType<typeof a.cli>>;
      let frozenMs = 0;
      try {
        await p.reached;
        await lan.link(1, false);
        await p.release();
        r = await migrating;
        frozenMs = performance.now() - t0;
        // B holds a ready copy it cannot ask about: it stays stopped.
        await Bun.sleep(4000);
        expect((await b.pod(name)).state).toBe("restoring");
      } finally {
        await lan.link(1, true);
      }
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toContain("stopped answering while the pod was frozen");
      expect(r.stderr).toContain("the pod runs on here");
      // Not the restore request's own 10 minutes (a 10x margin over the ~15 s measured).
      expect(frozenMs).toBeLessThan(150_000);
      await expectOnAThenRetry(name);
    },
    T,
  );
});

describe("autopod migrate, the destination's disk full", () => {
  for (const point of ["migrate.round", "migrate.frozen"] as const) {
    rootTest(
      `filled at ${point}: the pod runs on here, and once there is room a retry moves it`,
      async () => {
        const name = await startCounter(a, 8);
        const p = await pauseAt(a, point);
        const migrating = a.cli(["migrate", name, "--to", "b", "--max-rounds", "1"], 180_000);
        let filler = "";
        let r: Awaited<ReturnType<typeof a.cli>>;
        try {
          await p.reached;
          filler = fillB();
          await p.release();
          r = await migrating;
        } finally {
          if (filler) rmSync(filler, { force: true });
        }
        expect(r.exitCode).not.toBe(0);
        expect(r.stderr).toMatch(/space|ENOSPC|full/i);
        expect(r.stderr).toContain("the pod runs on here");
        await expectOnAThenRetry(name);
      },
      T,
    );
  }
});

describe("autopod migrate, a corrupt chunk from the source", () => {
  rootTest(
    "in a round: the destination refuses it, the pod runs on here, a retry moves it",
    async () => {
      const name = await startCounter(a);
      await setFailpoint(a, "export.chunk-framed", "1*corrupt->off");
      const r = await a.cli(["migrate", name, "--to", "b", "--max-rounds", "1"], 180_000);
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toContain("is corrupt in the export");
      expect(r.stderr).toContain("the pod runs on here");
      await expectOnAThenRetry(name);
    },
    T,
  );

  rootTest(
    "in the final delta: the destination refuses it, the source's copy continues, a retry moves it",
    async () => {
      const name = await startCounter(a);
      const p = await pauseAt(a, "migrate.frozen");
      const migrating = a.cli(["migrate", name, "--to", "b", "--max-rounds", "1"], 180_000);
      await p.reached;
      await setFailpoint(a, "export.chunk-framed", "1*corrupt->off");
      await p.release();
      const r = await migrating;
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toContain("is corrupt in the export");
      expect(r.stderr).toContain("the pod runs on here");
      await expectOnAThenRetry(name);
    },
    T,
  );
});
