import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Fixture, leftovers, makeFixture, runningPod } from "./_fixture.ts";
import { type Journal, UNVERIFIED, writeJournal } from "./journal.ts";

let f: Fixture;
beforeEach(() => {
  f = makeFixture();
});
afterEach(() => f.close());

const NETNS = "/run/netns/autopod-k1-web";
const stop = { leaveRunning: false, excludeVolumes: [] };
const leaveRunning = { leaveRunning: true, excludeVolumes: [] };

/** Start work that never ends (the fake host hangs at `verb`), as if the agent died there; then a new agent. */
async function dieAt(verb: string, work: () => Promise<unknown>): Promise<void> {
  f.host.hangAt = verb;
  void work();
  while (!f.host.calls.some((c) => c.startsWith(verb))) await Bun.sleep(1);
  await Bun.sleep(20);
  f.host.hangAt = null;
  f.restart();
  f.host.calls.length = 0;
}

/** A journal as an agent that died would have left it, with its temporary directory. */
function journal(j: Omit<Journal, "tmp">): string {
  const tmp = mkdtempSync(join(f.state, "tmp", `${j.kind}-${j.pod}-`));
  writeJournal(f.state, { ...j, tmp });
  return tmp;
}

/** A committed image of the running pod "web" (left running); its id. */
async function committedImage(): Promise<string> {
  const { id } = await f.cp.checkpoint("web", leaveRunning);
  f.host.calls.length = 0;
  return id;
}

describe("an interrupted checkpoint", () => {
  test("killed during the dump: CRIU is killed, the pod's tasks continued, every lock lifted; the pod runs on", async () => {
    const pid = await runningPod(f);
    await dieAt("dump", () => f.cp.checkpoint("web", stop));
    expect(f.pods.get("web").state).toBe("checkpointing");
    expect(f.host.stopped.has(pid)).toBe(true);
    await f.cp.recover();
    expect(f.host.callsOf("killCriu", "continue", "kill", "removeCriuLock", "unlockNetwork")).toEqual([
      "killCriu 50000",
      `continue ${pid}`,
      `removeCriuLock ${NETNS}`,
      `unlockNetwork ${NETNS}`,
    ]);
    expect(f.host.stopped.size).toBe(0);
    expect(f.host.locked.size).toBe(0);
    expect(f.pods.get("web")).toMatchObject({ state: "running", pid });
    expect(f.catalogue.list()).toEqual([]);
    expect(leftovers(f)).toEqual([]);
  });

  test("killed while locking the network, before the dump: the pod runs on, unlocked", async () => {
    const pid = await runningPod(f);
    await dieAt("lockNetwork", () => f.cp.checkpoint("web", stop));
    await f.cp.recover();
    expect(f.host.callsOf("killCriu", "continue", "kill", "unlockNetwork")).toEqual([`continue ${pid}`, `unlockNetwork ${NETNS}`]);
    expect(f.host.locked.size).toBe(0);
    expect(f.pods.get("web").state).toBe("running");
    expect(leftovers(f)).toEqual([]);
  });

  test("killed after the commit of a stop checkpoint, its tasks still stopped: they are killed under the network lock, the pod is checkpointed", async () => {
    const pid = await runningPod(f);
    const id = await committedImage();
    f.pods.beginCheckpoint("web");
    f.host.stopped.add(pid);
    journal({ kind: "checkpoint", pod: "web", pid, criuPid: null, imageId: id, leaveRunning: false });
    f.restart();
    await f.cp.recover();
    expect(f.host.callsOf("lockNetwork", "kill", "waitGone", "continue", "unlockNetwork")).toEqual([`lockNetwork ${NETNS}`, `kill ${pid}`, `waitGone ${pid}`]);
    expect(f.host.isAlive(pid)).toBe(false);
    expect(f.pods.get("web").state).toBe("checkpointed");
    // Released: its network and cgroup are gone, its image stays.
    expect(f.podHost.netns.has("autopod-k1-web")).toBe(false);
    expect(f.catalogue.has(id)).toBe(true);
    expect(leftovers(f)).toEqual([]);
  });

  test("killed after the commit and the kill of a stop checkpoint: the pod is checkpointed, nothing more is signalled", async () => {
    const pid = await runningPod(f);
    const id = await committedImage();
    f.pods.beginCheckpoint("web");
    f.podHost.exit(pid, { code: null, signal: 9 });
    journal({ kind: "checkpoint", pod: "web", pid, criuPid: null, imageId: id, leaveRunning: false });
    f.restart();
    await f.cp.recover();
    expect(f.host.callsOf("lockNetwork", "kill", "continue")).toEqual([]);
    expect(f.pods.get("web").state).toBe("checkpointed");
  });

  test("killed after the commit of a --leave-running checkpoint: the pod runs on, its image kept", async () => {
    const pid = await runningPod(f);
    const id = await committedImage();
    f.pods.beginCheckpoint("web");
    journal({ kind: "checkpoint", pod: "web", pid, criuPid: null, imageId: id, leaveRunning: true });
    f.restart();
    await f.cp.recover();
    expect(f.host.callsOf("kill", "continue")).toEqual([`continue ${pid}`]);
    expect(f.pods.get("web")).toMatchObject({ state: "running", pid });
    expect(f.catalogue.has(id)).toBe(true);
  });

  test("a journal naming an image that was never committed is undone", async () => {
    const pid = await runningPod(f);
    f.pods.beginCheckpoint("web");
    journal({ kind: "checkpoint", pod: "web", pid, criuPid: null, imageId: "ab".repeat(32), leaveRunning: false });
    f.restart();
    await f.cp.recover();
    expect(f.host.callsOf("kill", "continue")).toEqual([`continue ${pid}`]);
    expect(f.pods.get("web").state).toBe("running");
  });
});

describe("an interrupted restore", () => {
  async function checkpointedImage(): Promise<string> {
    await runningPod(f);
    const { id } = await f.cp.checkpoint("web", stop);
    await f.pods.settled("web");
    f.host.calls.length = 0;
    return id;
  }

  test("killed while CRIU restored (its pages not all checked): the stopped tasks are killed, the pod checkpointed, the image restores again", async () => {
    const id = await checkpointedImage();
    await dieAt("restore", () => f.cp.restore(id, {}));
    const pid = f.host.nextRestoredPid - 1;
    expect(f.pods.get("web").state).toBe("restoring");
    await f.cp.recover();
    expect(f.host.callsOf("killCriu", "kill", "waitGone", "continue", "removeCriuLock", "unlockNetwork")).toEqual([
      "killCriu 50001",
      `kill ${pid}`,
      `waitGone ${pid}`,
      `removeCriuLock ${NETNS}`,
    ]);
    expect(f.host.isAlive(pid)).toBe(false);
    expect(f.pods.get("web").state).toBe("checkpointed");
    expect(f.podHost.netns.has("autopod-k1-web")).toBe(false);
    expect(leftovers(f)).toEqual([]);
    expect((await f.cp.restore(id, {})).pod.state).toBe("running");
  });

  test("killed after the tasks were checked and continued: the pod is adopted, its network unlocked", async () => {
    const id = await checkpointedImage();
    await dieAt("unlockNetwork", () => f.cp.restore(id, {}));
    const pid = f.host.nextRestoredPid - 1;
    await f.cp.recover();
    expect(f.host.callsOf("kill", "continue", "removeCriuLock", "unlockNetwork")).toEqual([
      `continue ${pid}`,
      `removeCriuLock ${NETNS}`,
      `unlockNetwork ${NETNS}`,
    ]);
    expect(f.host.locked.size).toBe(0);
    expect(f.pods.get("web")).toMatchObject({ state: "running", pid });
    expect(leftovers(f)).toEqual([]);
  });

  test("killed before CRIU put any process back: undone, the pod checkpointed", async () => {
    const id = await checkpointedImage();
    await f.pods.prepareRestore("web");
    const tmp = journal({ kind: "restore", pod: "web", pid: null, criuPid: null, imageId: id, leaveRunning: false });
    mkdirSync(join(tmp, "criu"));
    writeFileSync(join(tmp, UNVERIFIED), "");
    f.restart();
    await f.cp.recover();
    expect(f.host.callsOf("kill", "continue", "removeCriuLock", "unlockNetwork")).toEqual([`removeCriuLock ${NETNS}`]);
    expect(f.pods.get("web").state).toBe("checkpointed");
    expect(f.podHost.netns.has("autopod-k1-web")).toBe(false);
  });
});

describe("recovery cleans up", () => {
  test("an unreadable journal and temporary directories without one go; a journal of a pod in no operation changes nothing", async () => {
    const pid = await runningPod(f);
    writeFileSync(join(f.state, "journal", "bad.json"), "{");
    mkdirSync(join(f.state, "tmp", "checkpoint-orphan-x"));
    journal({ kind: "checkpoint", pod: "web", pid, criuPid: null, imageId: null, leaveRunning: false });
    f.restart();
    await f.cp.recover();
    expect(f.host.calls).toEqual([]);
    expect(f.pods.get("web")).toMatchObject({ state: "running", pid });
    expect(readdirSync(join(f.state, "journal"))).toEqual([]);
    expect(leftovers(f)).toEqual([]);
  });
});
