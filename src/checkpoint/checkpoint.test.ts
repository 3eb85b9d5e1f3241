import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ConflictError, InvalidArgumentError, PreconditionError } from "../errors.ts";
import { type Fixture, leftovers, makeFixture, runningPod } from "./_fixture.ts";

let f: Fixture;
beforeEach(() => {
  f = makeFixture();
});
afterEach(() => f.close());

const NETNS = "/run/netns/autopod-k1-web";
const stop = { leaveRunning: false, excludeVolumes: [] };
const leaveRunning = { leaveRunning: true, excludeVolumes: [] };

/** Mark the commit in the host's call log, so its order against the kill or continue shows. */
function markCommits(f: Fixture, fail?: string): void {
  const add = f.catalogue.addEncoded.bind(f.catalogue);
  f.catalogue.addEncoded = (...a: Parameters<typeof add>) => {
    f.host.calls.push("commit");
    if (fail) throw new Error(fail);
    return add(...a);
  };
}

describe("a stop checkpoint", () => {
  test("locks the network, dumps with the tasks left stopped, commits, and only then kills the pod", async () => {
    const pid = await runningPod(f);
    markCommits(f);
    const r = await f.cp.checkpoint("web", stop);
    expect(f.host.callsOf("lockNetwork", "unlockNetwork", "dump", "commit", "continue", "kill")).toEqual([
      `lockNetwork ${NETNS}`,
      `dump ${pid} leave=stopped`,
      "commit",
      `kill ${pid}`,
    ]);
    expect(r).toMatchObject({ pod: "web", parent: null, leftRunning: false });
    expect(Object.keys(r.phases)).toEqual(["prepare", "dump", "files", "base", "images", "commit", "stop"]);
    expect(f.pods.get("web").state).toBe("checkpointed");
    // The killed pod stays cut off from its peers until it is restored.
    expect(f.host.locked.has(NETNS)).toBe(true);
    const m = f.catalogue.manifest(r.id);
    expect(m).toMatchObject({ kernelRelease: "6.18.0", cpuFlags: ["avx2", "fpu", "sse4_2"], criuVersion: "4.2.1", pod: { name: "web" } });
    expect(m.criu.map((e) => e.path).sort()).toEqual([".", "inventory.img", "pages-1.img"]);
    expect(m.rootfs.map((e) => e.path)).toContain("data.txt");
    expect(m.base?.map((e) => e.path)).toContain("bin/sleep");
    expect(leftovers(f)).toEqual([]);
    // Its network and cgroup are released after the answer.
    await f.pods.settled("web");
    expect(f.podHost.netns.has("autopod-k1-web")).toBe(false);
  });

  test("a second checkpoint has the first as its parent", async () => {
    await runningPod(f);
    const first = await f.cp.checkpoint("web", leaveRunning);
    const second = await f.cp.checkpoint("web", stop);
    expect(second.parent).toBe(first.id);
  });
});

describe("a --leave-running checkpoint", () => {
  test("continues the pod once its files are captured, before the commit, and never locks its network", async () => {
    const pid = await runningPod(f);
    markCommits(f);
    const r = await f.cp.checkpoint("web", leaveRunning);
    expect(f.host.callsOf("lockNetwork", "dump", "commit", "continue", "kill")).toEqual([`dump ${pid} leave=stopped`, `continue ${pid}`, "commit"]);
    expect(r.leftRunning).toBe(true);
    expect(Object.keys(r.phases)).toEqual(["prepare", "dump", "files", "base", "images", "commit", "continue"]);
    expect(f.pods.get("web")).toMatchObject({ state: "running", pid });
    expect(f.host.stopped.size).toBe(0);
    expect(f.catalogue.has(r.id)).toBe(true);
    expect(leftovers(f)).toEqual([]);
  });
});

describe("a failed checkpoint leaves the pod running and no image", () => {
  test("CRIU's dump fails: the tasks run on (CRIU resumed them), every lock is lifted", async () => {
    const pid = await runningPod(f);
    f.host.failDump = "Error (criu/cr-dump.c:1): something";
    const e = await f.cp.checkpoint("web", stop).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(PreconditionError);
    expect((e as Error).message).toBe('Cannot checkpoint pod "web": Error (criu/cr-dump.c:1): something; the pod keeps running');
    expect(f.host.callsOf("continue", "kill")).toEqual([]);
    expect(f.host.calls).toContain(`removeCriuLock ${NETNS}`);
    expect(f.host.locked.size).toBe(0);
    expect(f.host.criuLocked.size).toBe(0);
    expect(f.pods.get("web")).toMatchObject({ state: "running", pid });
    expect(f.catalogue.list()).toEqual([]);
    expect(leftovers(f)).toEqual([]);
    // Nothing holds the pod: the next checkpoint works.
    f.host.failDump = null;
    expect((await f.cp.checkpoint("web", stop)).pod).toBe("web");
  });

  test("the commit fails (a full disk): the stopped tasks are continued, never killed, and the network unlocked", async () => {
    const pid = await runningPod(f);
    markCommits(f, "ENOSPC: no space left on device, write");
    const e = await f.cp.checkpoint("web", stop).catch((x: unknown) => x);
    expect((e as Error).message).toBe('Cannot checkpoint pod "web": ENOSPC: no space left on device, write; the pod keeps running');
    expect(f.host.callsOf("lockNetwork", "dump", "commit", "continue", "kill", "unlockNetwork")).toEqual([
      `lockNetwork ${NETNS}`,
      `dump ${pid} leave=stopped`,
      "commit",
      `continue ${pid}`,
      `unlockNetwork ${NETNS}`,
    ]);
    expect(f.host.stopped.size).toBe(0);
    expect(f.host.locked.size).toBe(0);
    expect(f.pods.get("web")).toMatchObject({ state: "running", pid });
    expect(f.catalogue.list()).toEqual([]);
    expect(leftovers(f)).toEqual([]);
  });

  test("a --leave-running checkpoint whose commit fails continues the pod once, before the commit", async () => {
    const pid = await runningPod(f);
    markCommits(f, "ENOSPC");
    await f.cp.checkpoint("web", leaveRunning).catch(() => undefined);
    expect(f.host.callsOf("continue", "commit", "kill")).toEqual([`continue ${pid}`, "commit"]);
    expect(f.pods.get("web").state).toBe("running");
  });
});

describe("a failure after the commit", () => {
  test("never undoes the checkpoint but finishes it: the committed image stays, the stopped tasks are killed, the pod checkpointed", async () => {
    const pid = await runningPod(f);
    // Writing the journal after the commit fails (its directory replaced by a file once the dump is done).
    breakJournalAfterDump(f);
    const e = await f.cp.checkpoint("web", stop).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(Error);
    rmSync(join(f.state, "journal"));
    mkdirSync(join(f.state, "journal"));
    expect(f.host.callsOf("continue", "kill", "unlockNetwork", "removeCriuLock")).toEqual([`kill ${pid}`]);
    expect(f.host.isAlive(pid)).toBe(false);
    expect(f.host.locked.has(NETNS)).toBe(true);
    expect(f.pods.get("web").state).toBe("checkpointed");
    expect(f.catalogue.list().length).toBe(1);
    expect(leftovers(f)).toEqual([]);
  });

  test("of a --leave-running checkpoint: the pod runs on", async () => {
    const pid = await runningPod(f);
    breakJournalAfterDump(f);
    await f.cp.checkpoint("web", leaveRunning).catch(() => undefined);
    expect(f.pods.get("web")).toMatchObject({ state: "running", pid });
    expect(f.catalogue.list().length).toBe(1);
  });
});

describe("a checkpoint that cannot be made is refused before anything changes", () => {
  const refusals: Array<[string, (f: Fixture) => void, RegExp]> = [
    ["no CRIU", (f) => (f.host.criuPath = null), /CRIU is not installed/],
    [
      "a CRIU too old for the kernel",
      (f) => (f.host.version = "3.17.1"),
      /CRIU 3\.17\.1 at \/usr\/local\/sbin\/criu is too old for Linux 6\.18\.0: it needs >= 4\.2/,
    ],
    ["no room", (f) => (f.host.free = 1 << 20), /Not enough free space to checkpoint pod "web"/],
  ];
  for (const [what, set, re] of refusals) {
    test(what, async () => {
      await runningPod(f);
      set(f);
      const e = await f.cp.checkpoint("web", stop).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(PreconditionError);
      expect((e as Error).message).toMatch(re);
      expect(f.host.calls).toEqual([]);
      expect(f.pods.get("web").state).toBe("running");
    });
  }

  test("an unknown volume to exclude", async () => {
    await runningPod(f);
    const e = await f.cp.checkpoint("web", { leaveRunning: false, excludeVolumes: ["/nope"] }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(InvalidArgumentError);
    expect((e as Error).message).toBe('Pod "web" has no volume at "/nope" (its volumes: none)');
    expect(f.host.calls).toEqual([]);
  });

  test("a pod being stopped: refused, and nothing is held (the claim, the store's merge, a temporary directory)", async () => {
    await runningPod(f);
    let holds = 0;
    const hold = f.store.holdMerging.bind(f.store);
    f.store.holdMerging = () => {
      holds++;
      const release = hold();
      return () => {
        holds--;
        release();
      };
    };
    const stopping = f.pods.stop("web", 0.2);
    const e = await f.cp.checkpoint("web", stop).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ConflictError);
    expect((e as Error).message).toBe('Cannot checkpoint pod "web": it is stopping');
    expect(holds).toBe(0);
    expect(leftovers(f)).toEqual([]);
    expect(f.host.calls).toEqual([]);
    await stopping;
    // The name is free: a new pod of that name can be checkpointed.
    await f.pods.remove("web", true);
    await runningPod(f);
    expect((await f.cp.checkpoint("web", stop)).pod).toBe("web");
  });

  test("a second checkpoint of the same pod while one runs", async () => {
    await runningPod(f);
    let release = () => {};
    f.host.duringDump = () => new Promise<void>((r) => (release = r));
    const first = f.cp.checkpoint("web", stop);
    while (!f.host.calls.some((c) => c.startsWith("dump"))) await Bun.sleep(1);
    const e = await f.cp.checkpoint("web", stop).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ConflictError);
    expect((e as Error).message).toBe('Pod "web" is already being checkpointed or restored');
    release();
    expect((await first).pod).toBe("web");
  });
});

/** From the end of the dump on, the journal directory is a file: every later journal write fails. */
function breakJournalAfterDump(f: Fixture): void {
  f.host.duringDump = () => {
    rmSync(join(f.state, "journal"), { recursive: true, force: true });
    writeFileSync(join(f.state, "journal"), "");
  };
}

describe("a pod CRIU cannot dump", () => {
  test("one holding an io_uring is refused before anything changes, naming the process, the cause and the fix", async () => {
    const pid = await runningPod(f);
    f.host.undumpable = [{ pid: pid + 7, command: "mariadbd", resource: "io_uring" }];
    const e = await f.cp.checkpoint("web", stop).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(PreconditionError);
    expect((e as Error).message).toBe(
      `Cannot checkpoint pod "web": pid ${pid + 7} (mariadbd) uses io_uring, which CRIU cannot dump; start MariaDB with innodb_use_native_aio = 0 (in the [mysqld] section of its configuration, or --innodb-use-native-aio=0), which makes InnoDB use its own I/O threads`,
    );
    expect(f.host.callsOf("lockNetwork", "dump")).toEqual([]);
    expect(f.pods.get("web").state).toBe("running");
    expect(leftovers(f)).toEqual([]);
  });
});
