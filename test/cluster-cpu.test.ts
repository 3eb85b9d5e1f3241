/**
 * The CPU baseline with real agents: host b acts as if its CPU lacked some
 * features (config cpu.flags_mask; all test hosts share one CPU). A pod
 * started on a runs with what both have, as its own glibc reports it
 * (ld.so --list-diagnostics in the pod), and restores on b; a pod opted out
 * uses all of a's CPU, and its image is refused on b before anything changes.
 */
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { GLIBC_HWCAPS } from "../src/cluster/cpu-baseline.ts";
import { TestCluster } from "./_cluster.ts";
import { glibcSelection, isCheckable } from "./_glibc.ts";
import { type TestHost, testRootfs } from "./_pods.ts";
import { rootTest } from "./_support.ts";

const T = 240_000;
const LDSO = "/lib64/ld-linux-x86-64.so.2";
/** Features glibc chooses string routines and library directories by; b lacks those of them this CPU has. */
const WANTED = ["avx512f", "avx512bw", "avx512vl", "avx2", "fma", "bmi2"];

/** The glibc selection a pod's first process saw: it prints its diagnostics, then sleeps. */
const DIAG_THEN_SLEEP = ["sh", "-c", `${LDSO} --list-diagnostics; echo diagnostics-done; exec sleep 100000`];

async function podDiagnostics(h: TestHost, pod: string): Promise<ReturnType<typeof glibcSelection>> {
  await h.waitForLog(pod, /diagnostics-done/);
  return glibcSelection((await h.cli(["logs", pod])).stdout);
}

describe("CPU baseline across hosts that differ in CPU", () => {
  let lan: TestCluster;
  let a: TestHost;
  let b: TestHost;
  let lacking: string[];
  let hidden: string[];
  const bEnv = () => ({ AUTOPOD_CPU_FLAGS_MASK: lacking.join(",") });

  beforeAll(async () => {
    if (process.getuid?.() !== 0) return;
    if (!existsSync(join(testRootfs(), LDSO)))
      throw new Error(`The test root ${testRootfs()} has no ${LDSO}: rebuild it with bash scripts/make-test-rootfs.sh ${testRootfs()}`);
    const flags = /^flags\s*:(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1]?.trim().split(/\s+/) ?? [];
    lacking = WANTED.filter((f) => flags.includes(f) && isCheckable(GLIBC_HWCAPS[f]!));
    if (!lacking.includes("avx2")) throw new Error(`This CPU lacks AVX2 (flags: ${flags.join(" ")}): the test needs a feature to take away`);
    hidden = lacking.map((f) => GLIBC_HWCAPS[f]!).sort();
    lan = await TestCluster.start("cpu", ["a", "b"]);
    [a, b] = lan.hosts as [TestHost, TestHost];
    await b.killAgent("SIGTERM");
    await b.startAgent(undefined, bEnv());
    await lan.formCluster("cpu", ["a", "b"]);
  }, 120_000);
  afterAll(async () => {
    await lan?.dispose();
  }, 120_000);

  rootTest(
    "a pod runs with the baseline (its glibc selected none of what b lacks) and restores on b; opted out, its image is refused there",
    async () => {
      // peers shows the baseline: what b lacks, and what a's pods leave out for it.
      const { cpu } = JSON.parse(await a.ok(["peers", "--json"]));
      expect(cpu).toMatchObject({ isBaselineOn: true, hidden, members: [{ name: "b", lacks: [...lacking].sort() }] });
      for (const f of lacking) expect(cpu.baseline).not.toContain(f);
      expect(await a.ok(["peers"])).toContain(`new pods start with glibc.cpu.hwcaps=${hidden.map((h) => `-${h}`).join(",")}`);
      const fromB = JSON.parse(await b.ok(["peers", "--json"])).cpu;
      expect(fromB.hidden).toEqual([]); // b has nothing a lacks

      // On a, the pod's own glibc counts none of them usable, nor the library directories that need them.
      const out = await a.ok(["run", "base", "--rootfs", testRootfs(), "--", ...DIAG_THEN_SLEEP]);
      expect(out).toContain(`(CPU baseline: without ${hidden.join(", ")})`);
      const onA = await podDiagnostics(a, "base");
      for (const h of hidden) expect(onA.usable.has(h)).toBe(false);
      expect(onA.usable.has("SSE4_2")).toBe(true);
      expect(onA.hwcapsSubdirs).not.toContain("x86-64-v3");
      expect(onA.tunables).toBe(`glibc.cpu.hwcaps=${hidden.map((h) => `-${h}`).join(",")}`);

      // Opted out, the same command on the same host has them all: the check above can fail.
      await a.ok(["run", "fast", "--cpu-baseline=off", "--rootfs", testRootfs(), "--", ...DIAG_THEN_SLEEP]);
      const fast = await podDiagnostics(a, "fast");
      for (const h of hidden) expect(fast.usable.has(h)).toBe(true);
      expect(fast.hwcapsSubdirs).toContain("x86-64-v3");

      // Checkpointed on a, pushed, restored on b: it runs there, and what it runs in it keeps the baseline.
      const id = await a.ok(["checkpoint", "base"]);
      await a.ok(["image", "push", id, "--to", "b"]);
      await b.ok(["restore", id, "--ip", `${b.prefix}.20/24`]);
      const restored = await b.pod("base");
      expect(restored.state).toBe("running");
      expect(restored.cpuHidden).toEqual(hidden);
      const inB = await b.cli(["exec", "base", "--", LDSO, "--list-diagnostics"]);
      expect(inB.exitCode).toBe(0);
      for (const h of hidden) expect(glibcSelection(inB.stdout).usable.has(h)).toBe(false);
      // Its next image, made on b, needs no more than the first.
      const id2 = await b.ok(["checkpoint", "base", "--leave-running"]);
      await b.ok(["image", "push", id2, "--to", "a"]);
      await a.ok(["rm", "base"]);
      await a.ok(["restore", id2, "--ip", `${a.prefix}.21/24`]);
      expect((await a.pod("base")).state).toBe("running");

      // The opted-out pod's image needs what b lacks: refused, naming it, and b is as it was.
      const fastId = await a.ok(["checkpoint", "fast"]);
      await a.ok(["image", "push", fastId, "--to", "b"]);
      const podsBefore = (await b.pods()).map((p) => `${p.name} ${p.state}`);
      const refused = await b.cli(["restore", fastId, "--ip", `${b.prefix}.22/24`]);
      expect(refused.exitCode).not.toBe(0);
      expect(refused.stderr).toContain(
        `This host's CPU lacks features the image's processes may use: ${[...lacking].sort().join(", ")}; restore it on a host that has them`,
      );
      expect((await b.pods()).map((p) => `${p.name} ${p.state}`)).toEqual(podsBefore);
      expect(b.podNetnses().length).toBe(1);
      // a, which has them, restores it.
      await a.ok(["restore", fastId]);
      expect((await a.pod("fast")).state).toBe("running");
    },
    T,
  );

  rootTest(
    "a peer that is down counts with the CPU it last reported, also after the agent restarts",
    async () => {
      await b.killAgent("SIGTERM");
      try {
        await a.killAgent("SIGTERM");
        await a.startAgent();
        const started = performance.now();
        const out = await a.ok(["run", "later", "--rootfs", testRootfs(), "--", "sleep", "1000"]);
        expect(out).toContain(`(CPU baseline: without ${hidden.join(", ")})`);
        // Starting the pod did not wait on the dead peer (a peer request times out after 10 s).
        const ms = performance.now() - started;
        console.log(`run with the only peer down: ${Math.round(ms)} ms`);
        expect(ms).toBeLessThan(8000);
        const peers = await a.cli(["peers"]);
        expect(peers.stdout).toContain("unreachable");
        expect(peers.stdout).toContain(`b lacks ${[...lacking].sort().join(", ")}`);
      } finally {
        await b.startAgent(undefined, bEnv());
      }
    },
    T,
  );
});
