/**
 * Zero data loss when things go wrong around a checkpoint, a restore or an
 * import: the agent killed at each phase (failpoints, src/debug/failpoints.ts,
 * so each phase is hit exactly), an error at a phase, a full disk. Real CRIU,
 * real agents; needs root.
 *
 * Each test drives one recovery branch and asserts that branch's own outcome:
 * an interrupted checkpoint is undone (the pod runs on, unstopped, with the
 * same memory, its network unlocked, no image and no pack bytes left) until
 * its image is committed, and finished after (the pod checkpointed, its
 * image restoring the same memory); an interrupted restore is undone (the pod
 * checkpointed, nothing of it running, the image intact and a retry working)
 * until its pages are verified, and adopted after; an interrupted import
 * leaves no image and no pack bytes until it commits, and a whole image after.
 */
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { FailpointName } from "../src/debug/failpoints.ts";
import { sh, TestHost } from "./_pods.ts";
import { isRoot, rootTest } from "./_support.ts";

const T = 240_000;
/** Failpoints allowed, none set: a test sets the one it drives through the local API. */
const FAILPOINTS = ["--failpoints", ""];
let host: TestHost;
let podCount = 0;

beforeAll(async () => {
  if (!isRoot) return;
  host = await TestHost.start("f");
  await host.killAgent("SIGTERM");
  await host.startAgent(undefined, {}, FAILPOINTS);
}, 60_000);
afterAll(async () => {
  await host?.dispose();
}, 60_000);

async function setFailpoint(h: TestHost, name: FailpointName, actions: string): Promise<void> {
  const r = await fetch(`http://agent/v1/debug/failpoints/${name}`, { unix: h.socket, method: "PUT", body: JSON.stringify({ actions }) });
  if (!r.ok) throw new Error(`Cannot set failpoint ${name}=${actions}: ${await r.text()}`);
}

/** The agent SIGKILLed itself at a failpoint while `request` ran: the request failed; a new agent (no failpoint set) starts. */
async function expectAgentKilledThenRestart(h: TestHost, request: Promise<{ exitCode: number; stderr: string }>): Promise<void> {
  const agent = h.agent!;
  await agent.exited;
  expect(agent.signalCode).toBe("SIGKILL");
  h.agent = null;
  expect((await request).exitCode).not.toBe(0);
  await h.startAgent(undefined, {}, FAILPOINTS);
}

async function logOf(h: TestHost, pod: string): Promise<string> {
  return (await h.cli(["logs", pod])).stdout;
}

/** memhog's checksum of its memory, asked for with SIGUSR2. */
async function memorySum(h: TestHost, pod: string): Promise<string> {
  const p = await h.pod(pod);
  const before = (await logOf(h, pod)).length;
  process.kill(p.pid!, "SIGUSR2");
  return (await h.waitForLog(pod, /sum [0-9a-f]+/, before)).split(" ")[1]!;
}

/** A new pod holding `mib` MiB of random memory, and its checksum. */
async function memhog(h: TestHost, mib = 64): Promise<{ pod: string; sum: string }> {
  const pod = `p${podCount++}`;
  await h.run(pod, ["/usr/local/bin/memhog", String(mib)]);
  await h.waitForLog(pod, /ready/);
  return { pod, sum: await memorySum(h, pod) };
}

/** The state of a process as /proc says it: R, S, T (stopped), Z ... */
function procState(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
}

/** Bytes in the store's pack files: what a partial image or import would leave. */
function packBytes(h: TestHost): number {
  const dir = join(h.stateDir, "store", "packs");
  return readdirSync(dir)
    .filter((f) => /^\d{8}\.(pack|pages)$/.test(f))
    .reduce((n, f) => n + statSync(join(dir, f)).size, 0);
}

async function imagesOf(h: TestHost, pod: string): Promise<string[]> {
  return JSON.parse(await h.ok(["images", "--json"]))
    .filter((i: { pod: string }) => i.pod === pod)
    .map((i: { id: string }) => i.id);
}

/** nftables tables in the pod's net namespace: none once its network is unlocked. */
async function netLockOf(h: TestHost, pod: string): Promise<string> {
  const r = await sh(["nsenter", `--net=/run/netns/autopod-${h.agentKey}-${pod}`, "--", "nft", "list", "tables"]);
  expect(r.exitCode).toBe(0);
  return r.stdout.trim();
}

/** Pids in the pod's cgroup (none: nothing of it runs). */
function cgroupPids(h: TestHost, pod: string): string[] {
  const cg = h.podCgroups().find((d) => d.endsWith(`/${pod}`));
  if (!cg || !existsSync(join(cg, "cgroup.procs"))) return [];
  return readFileSync(join(cg, "cgroup.procs"), "utf8").split("\n").filter(Boolean);
}

function expectNoLeftovers(h: TestHost): void {
  expect(readdirSync(join(h.stateDir, "tmp"))).toEqual([]);
  expect(readdirSync(join(h.stateDir, "journal"))).toEqual([]);
}

/** Undone: running, not stopped, the same memory, its network open. */
async function expectRunsOn(h: TestHost, pod: string, sum: string): Promise<void> {
  const p = await h.pod(pod);
  expect(p.state).toBe("running");
  expect(procState(p.pid!)).not.toBe("T");
  expect(await memorySum(h, pod)).toBe(sum);
  expect(await netLockOf(h, pod)).toBe("");
  expectNoLeftovers(h);
}

/** Checkpointed: nothing of it runs, its network and cgroup released; `image` restores the same memory. */
async function expectCheckpointedAndRestorable(h: TestHost, pod: string, sum: string, image: string): Promise<void> {
  await h.waitForState(pod, /^checkpointed/);
  // Released on start after a recovery; after a checkpoint's answer, by the agent soon after (releaseWhenGone).
  const netnsOf = () => h.podNetnses().filter((n) => n.endsWith(`-${pod}`));
  for (const deadline = Date.now() + 10_000; netnsOf().length > 0 && Date.now() < deadline; ) await Bun.sleep(50);
  expect(netnsOf()).toEqual([]);
  expect(cgroupPids(h, pod)).toEqual([]);
  expectNoLeftovers(h);
  await h.ok(["restore", image]);
  await expectRunsOn(h, pod, sum);
}

/** Kill the agent at `point` of a checkpoint of a new pod; returns the pod, its memory's checksum and the pack bytes before. */
async function checkpointKilledAt(point: FailpointName, flags: string[] = []): Promise<{ pod: string; sum: string; packs: number }> {
  const { pod, sum } = await memhog(host);
  const packs = packBytes(host);
  await setFailpoint(host, point, "kill");
  await expectAgentKilledThenRestart(host, host.cli(["checkpoint", pod, ...flags], T));
  return { pod, sum, packs };
}

describe("the agent killed during a checkpoint, before its image is committed: undone", () => {
  for (const point of ["checkpoint.started", "checkpoint.dumped", "checkpoint.files-stored", "checkpoint.images-stored"] as const) {
    rootTest(
      `at ${point}: the pod runs on with the same memory, no image, no pack bytes`,
      async () => {
        const { pod, sum, packs } = await checkpointKilledAt(point);
        await expectRunsOn(host, pod, sum);
        expect(await imagesOf(host, pod)).toEqual([]);
        expect(packBytes(host)).toBe(packs);
        // And a checkpoint now works.
        const id = await host.ok(["checkpoint", pod]);
        await expectCheckpointedAndRestorable(host, pod, sum, id);
        await host.ok(["rm", "--force", pod]);
      },
      T,
    );
  }

  rootTest(
    "at checkpoint.criu-started, with CRIU still dumping the pod when the agent starts again: CRIU is let finish, and the pod runs on",
    async () => {
      const { pod, sum } = await memhog(host, 256);
      const podPid = (await host.pod(pod)).pid!;
      const packs = packBytes(host);
      await setFailpoint(host, "checkpoint.criu-started", "kill");
      const cp = host.cli(["checkpoint", pod], T);
      const agent = host.agent!;
      await agent.exited;
      expect(agent.signalCode).toBe("SIGKILL");
      host.agent = null;
      // The journal names the CRIU the agent left behind. Caught with its parasite in the pod's first task (compel maps it
      // from a memfd named CRIUMFD), it is held stopped there.
      const journal = JSON.parse(readFileSync(join(host.stateDir, "journal", `${pod}.json`), "utf8")) as { criuPid: number };
      const hasParasite = () => {
        try {
          return readFileSync(`/proc/${podPid}/maps`, "utf8").includes("CRIUMFD");
        } catch {
          return false;
        }
      };
      const deadline = Date.now() + 60_000;
      while (!hasParasite()) {
        if (Date.now() > deadline || !existsSync(`/proc/${journal.criuPid}`)) throw new Error("CRIU was not caught with its parasite in the pod");
        await Bun.sleep(1);
      }
      process.kill(journal.criuPid, "SIGSTOP");
      expect((await cp).exitCode).not.toBe(0);
      const starting = host.startAgent(undefined, {}, FAILPOINTS);
      await Bun.sleep(2000); // the new agent recovers meanwhile
      try {
        process.kill(journal.criuPid, "SIGCONT");
      } catch {
        // already killed
      }
      await starting;
      await expectRunsOn(host, pod, sum);
      expect(await imagesOf(host, pod)).toEqual([]);
      expect(packBytes(host)).toBe(packs);
      await host.ok(["rm", "--force", pod]);
    },
    T,
  );

  rootTest(
    "at checkpoint.images-stored with --leave-running: the pod runs on, no image",
    async () => {
      const { pod, sum, packs } = await checkpointKilledAt("checkpoint.images-stored", ["--leave-running"]);
      await expectRunsOn(host, pod, sum);
      expect(await imagesOf(host, pod)).toEqual([]);
      expect(packBytes(host)).toBe(packs);
      await host.ok(["rm", "--force", pod]);
    },
    T,
  );
});

describe("the agent killed during a checkpoint, after its image is committed: finished", () => {
  for (const point of ["checkpoint.committed", "checkpoint.pod-killed", "checkpoint.ended"] as const) {
    rootTest(
      `at ${point}: the pod is checkpointed, released, and its image restores the same memory`,
      async () => {
        const { pod, sum } = await checkpointKilledAt(point);
        const images = await imagesOf(host, pod);
        expect(images.length).toBe(1);
        await expectCheckpointedAndRestorable(host, pod, sum, images[0]!);
        await host.ok(["rm", "--force", pod]);
      },
      T,
    );
  }

  rootTest(
    "at checkpoint.committed with --leave-running: the pod runs on, and its image restores the same memory as a second pod",
    async () => {
      const { pod, sum } = await checkpointKilledAt("checkpoint.committed", ["--leave-running"]);
      await expectRunsOn(host, pod, sum);
      const images = await imagesOf(host, pod);
      expect(images.length).toBe(1);
      const copy = `${pod}c`;
      await host.ok(["restore", images[0]!, "--name", copy, "--ip", `${host.prefix}.250/24`]);
      expect(await memorySum(host, copy)).toBe(sum);
      await host.ok(["rm", "--force", pod, copy]);
    },
    T,
  );

  rootTest(
    "right after a checkpoint answered, before the pod's network and cgroup were released: released when the agent starts",
    async () => {
      const { pod, sum } = await memhog(host);
      await setFailpoint(host, "pods.release-checkpointed", "pause");
      const id = await host.ok(["checkpoint", pod]);
      await host.killAgent("SIGKILL");
      expect(host.podNetnses().filter((n) => n.endsWith(`-${pod}`)).length).toBe(1); // not released
      await host.startAgent(undefined, {}, FAILPOINTS);
      await expectCheckpointedAndRestorable(host, pod, sum, id);
      await host.ok(["rm", "--force", pod]);
    },
    T,
  );
});

describe("a checkpoint that fails at a phase", () => {
  rootTest(
    "after the commit: finished as a restarted agent would, the pod checkpointed and its image restoring the same memory",
    async () => {
      const { pod, sum } = await memhog(host);
      await setFailpoint(host, "checkpoint.committed", "1*error(Injected failure after the commit)");
      const r = await host.cli(["checkpoint", pod]);
      expect(r.exitCode).not.toBe(0);
      const images = await imagesOf(host, pod);
      expect(images.length).toBe(1);
      expect(r.stderr).toContain(
        `Checkpoint of pod "${pod}" failed after its image ${images[0]} was committed: Injected failure after the commit (failpoint "checkpoint.committed"); the pod is checkpointed`,
      );
      await expectCheckpointedAndRestorable(host, pod, sum, images[0]!);
      await host.ok(["rm", "--force", pod]);
    },
    T,
  );

  rootTest(
    "before the commit: the answer says the pod keeps running, and it does, with no image and no pack bytes",
    async () => {
      const { pod, sum } = await memhog(host);
      const packs = packBytes(host);
      await setFailpoint(host, "checkpoint.images-stored", "1*error(No space left on device)");
      const r = await host.cli(["checkpoint", pod]);
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toContain(`Cannot checkpoint pod "${pod}": No space left on device (failpoint "checkpoint.images-stored"); the pod keeps running`);
      await expectRunsOn(host, pod, sum);
      expect(await imagesOf(host, pod)).toEqual([]);
      expect(packBytes(host)).toBe(packs);
      await host.ok(["rm", "--force", pod]);
    },
    T,
  );
});

/** A checkpointed pod and its image; the agent is then killed at `point` of its restore. */
async function restoreKilledAt(point: FailpointName): Promise<{ pod: string; sum: string; id: string }> {
  const { pod, sum } = await memhog(host);
  const id = await host.ok(["checkpoint", pod]);
  await setFailpoint(host, point, "kill");
  await expectAgentKilledThenRestart(host, host.cli(["restore", id], T));
  return { pod, sum, id };
}

describe("the agent killed during a restore", () => {
  rootTest(
    "at restore.files-made, once the pod is restoring but nothing is journaled: the pod checkpointed, its network and cgroup released, a retry works",
    async () => {
      const { pod, sum } = await memhog(host);
      const id = await host.ok(["checkpoint", pod]);
      await setFailpoint(host, "restore.files-made", "pause");
      const rs = host.cli(["restore", id], T);
      // Held there until prepareRestore (which runs beside the files being made) marked the pod restoring.
      await host.waitForState(pod, /^restoring$/, 60_000);
      expect(host.podNetnses().filter((n) => n.endsWith(`-${pod}`)).length).toBe(1);
      await host.killAgent("SIGKILL");
      expect((await rs).exitCode).not.toBe(0);
      await host.startAgent(undefined, {}, FAILPOINTS);
      expect(await imagesOf(host, pod)).toEqual([id]);
      await expectCheckpointedAndRestorable(host, pod, sum, id);
      await host.ok(["rm", "--force", pod]);
    },
    T,
  );

  for (const point of ["restore.prepared", "restore.criu-started", "restore.criu-done"] as const) {
    rootTest(
      `at ${point}, before the pages were verified: undone, the pod checkpointed with nothing running, the image intact, a retry works`,
      async () => {
        const { pod, sum, id } = await restoreKilledAt(point);
        expect(await imagesOf(host, pod)).toEqual([id]);
        await expectCheckpointedAndRestorable(host, pod, sum, id);
        await host.ok(["rm", "--force", pod]);
      },
      T,
    );
  }

  for (const point of ["restore.verified", "restore.continued"] as const) {
    rootTest(
      `at ${point}: adopted, the pod runs with the same memory and its network open`,
      async () => {
        const { pod, sum, id } = await restoreKilledAt(point);
        await expectRunsOn(host, pod, sum);
        expect(await imagesOf(host, pod)).toEqual([id]);
        await host.ok(["rm", "--force", pod]);
      },
      T,
    );
  }

  rootTest(
    "a restore that fails after CRIU put the tasks back: nothing of the pod runs, the answer says the image is intact, a retry works",
    async () => {
      const { pod, sum } = await memhog(host);
      const id = await host.ok(["checkpoint", pod]);
      await setFailpoint(host, "restore.criu-done", "1*error(Injected page mismatch)");
      const r = await host.cli(["restore", id]);
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toContain('Injected page mismatch (failpoint "restore.criu-done"); the image is intact');
      await expectCheckpointedAndRestorable(host, pod, sum, id);
      await host.ok(["rm", "--force", pod]);
    },
    T,
  );
});

describe("the agent killed during an import", () => {
  /** An exported image whose chunks are no longer in the store; returns the file, the image id and the pod's checksum. */
  async function exported(): Promise<{ pod: string; sum: string; id: string; file: string }> {
    const { pod, sum } = await memhog(host);
    const id = await host.ok(["checkpoint", pod]);
    const file = join(host.dir, `${pod}.apimg`);
    await host.ok(["image", "export", id, file]);
    await host.ok(["rm", "--force", pod]);
    await host.ok(["image", "rm", id]);
    await host.ok(["image", "gc"]);
    return { pod, sum, id, file };
  }

  for (const point of ["import.manifest-read", "import.chunks-stored"] as const) {
    rootTest(
      `at ${point}, before the commit: no image, no pack bytes; a retry imports it whole`,
      async () => {
        const { pod, sum, id, file } = await exported();
        const packs = packBytes(host);
        await setFailpoint(host, point, "kill");
        await expectAgentKilledThenRestart(host, host.cli(["image", "import", file], T));
        expect(JSON.parse(await host.ok(["images", "--json"])).map((i: { id: string }) => i.id)).not.toContain(id);
        expect(packBytes(host)).toBe(packs);
        expectNoLeftovers(host);
        expect(await host.ok(["image", "import", file])).toBe(id);
        await host.ok(["restore", id]);
        expect(await memorySum(host, pod)).toBe(sum);
        await host.ok(["rm", "--force", pod]);
      },
      T,
    );
  }

  rootTest(
    "at import.committed: the image is whole and restores the same memory",
    async () => {
      const { pod, sum, id, file } = await exported();
      await setFailpoint(host, "import.committed", "kill");
      await expectAgentKilledThenRestart(host, host.cli(["image", "import", file], T));
      expect(JSON.parse(await host.ok(["images", "--json"])).map((i: { id: string }) => i.id)).toContain(id);
      await host.ok(["restore", id]);
      expect(await memorySum(host, pod)).toBe(sum);
      await host.ok(["rm", "--force", pod]);
    },
    T,
  );
});

describe("a full disk during a checkpoint", () => {
  rootTest(
    "leaves the pod running and no partial image",
    async () => {
      const small = await TestHost.start("s");
      try {
        // The state directory on a 400 MiB tmpfs, filled up while the checkpoint is held after the dump.
        await small.killAgent("SIGTERM");
        const m = await sh(["mount", "-t", "tmpfs", "-o", "size=400m,mode=0700", "autopod-test-full", small.stateDir]);
        expect(m.exitCode).toBe(0);
        const go = join(small.dir, "go");
        await small.startAgent(undefined, {}, ["--failpoints", `checkpoint.dumped=1*pause(${go})`]);
        await small.run("big", ["/usr/local/bin/memhog", "128"]);
        await small.waitForLog("big", /ready/);
        const sum = await memorySum(small, "big");
        const cp = small.cli(["checkpoint", "big"], T);
        // Held at the failpoint until the disk is full.
        const deadline = Date.now() + 60_000;
        while (!readFileSync(join(small.dir, "agent.log"), "utf8").includes('failpoint "checkpoint.dumped": paused')) {
          if (Date.now() > deadline) throw new Error("the checkpoint never reached checkpoint.dumped");
          await Bun.sleep(20);
        }
        const filler = join(small.stateDir, "filler");
        await sh(["dd", "if=/dev/zero", `of=${filler}`, "bs=1M"], { timeoutMs: 60_000 });
        await sh(["touch", go]);
        const r = await cp;
        await sh(["rm", "-f", filler]);
        expect(r.exitCode).not.toBe(0);
        expect(r.stderr).toMatch(/No space left on device|ENOSPC|disk is full|Not enough free space/);
        expect(r.stderr).toContain("the pod keeps running");
        console.log(`full disk: ${r.stderr.trim()}`);
        const p = await small.pod("big");
        expect(p.state).toBe("running");
        expect(procState(p.pid!)).not.toBe("T");
        expect(await memorySum(small, "big")).toBe(sum);
        expect(JSON.parse(await small.ok(["images", "--json"]))).toEqual([]);
        expect(readdirSync(join(small.stateDir, "tmp"))).toEqual([]);
        // The space is back: a checkpoint of a smaller pod works.
        await small.ok(["rm", "--force", "big"]);
        await small.run("little", ["/usr/local/bin/memhog", "8"]);
        await small.waitForLog("little", /ready/);
        await small.ok(["checkpoint", "little"]);
      } finally {
        await small.dispose();
      }
    },
    T,
  );
});
