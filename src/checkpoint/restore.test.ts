import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { closeSync, openSync, readdirSync, readFileSync, readSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { ConflictError, PreconditionError } from "../errors.ts";
import { randomBytes } from "../image/testing.ts";
import { type Fixture, leftovers, makeFixture, runningPod } from "./_fixture.ts";
import { writableLayerOf } from "./placement.ts";
import { MissingCpuFeaturesError } from "./host-compat.ts";

let f: Fixture;
beforeEach(() => {
  f = makeFixture();
});
afterEach(() => f.close());

const NETNS = "/run/netns/autopod-k1-web";
const stop = { leaveRunning: false, excludeVolumes: [] };

/** A pod checkpointed (stopped) on this host; its image id. */
async function checkpointed(): Promise<string> {
  await runningPod(f);
  const { id } = await f.cp.checkpoint("web", stop);
  await f.pods.settled("web");
  f.host.calls.length = 0;
  return id;
}

describe("a restore", () => {
  test("restores the tasks stopped, checks their pages, continues them, and only then lets peers in", async () => {
    const id = await checkpointed();
    const r = await f.cp.restore(id.slice(0, 8), {});
    const pid = r.pod.pid!;
    expect(f.host.callsOf("restore", "continue", "unlockNetwork", "kill")).toEqual([
      `restore ${NETNS} tcp=true stopped=true`,
      `continue ${pid}`,
      `unlockNetwork ${NETNS}`,
    ]);
    expect(r).toMatchObject({ image: id, tcp: "kept", notes: [], pod: { name: "web", state: "running", pid } });
    expect(Object.keys(r.phases)).toEqual(["check", "images", "layer", "baseAndVolumes", "prepare", "criu", "verify", "finish"]);
    expect(f.host.stopped.size).toBe(0);
    expect(f.host.locked.size).toBe(0);
    // The pod's layer is the image's.
    expect(readFileSync(join(writableLayerOf(f.pods.record("web").runtime), "data.txt"), "utf8")).toBe("data of web\n");
    expect(leftovers(f)).toEqual([]);
  });

  test("under a new name and address closes TCP connections", async () => {
    const id = await checkpointed();
    const r = await f.cp.restore(id, { name: "copy", ip: "10.213.7.5/29" });
    expect(r).toMatchObject({ tcp: "closed", pod: { name: "copy", state: "running", address: "10.213.7.5/29" } });
    expect(f.host.callsOf("restore")).toEqual(["restore /run/netns/autopod-k1-copy tcp=false stopped=true"]);
  });
});

describe("limits travel with the image", () => {
  test("--cpus and --pids-max come back on a restore under a new name, set after CRIU; the memory limit before it", async () => {
    await runningPod(f, "web", { memoryBytes: 64 * 2 ** 20, cpus: 0.5, pidsMax: 32 });
    const { id } = await f.cp.checkpoint("web", stop);
    await f.pods.settled("web");
    f.podHost.calls.length = 0;
    await f.cp.restore(id, { name: "copy", ip: "10.213.7.5/29" });
    const copy = f.pods.record("copy");
    expect([copy.spec.memoryBytes, copy.spec.cpus, copy.spec.pidsMax]).toEqual([64 * 2 ** 20, 0.5, 32]);
    expect(f.podHost.cgroups.get(copy.runtime.cgroup!)).toMatchObject({ limit: 64 * 2 ** 20, cpus: 0.5, pidsMax: 32 });
    const calls = f.podHost.calls.filter((c) => c.startsWith("createCgroup") || c.startsWith("limitCgroup"));
    expect(calls).toEqual([`createCgroup ${copy.runtime.cgroup}`, `limitCgroup ${copy.runtime.cgroup} cpus=0.5 pids=32`]);
    expect(f.pods.get("copy")).toMatchObject({ cpuLimit: 0.5, pidsLimit: 32 });
  });
});

describe("a failed restore leaves the image intact and the pod as it was", () => {
  test("CRIU fails: the lock it left is removed, the pod is checkpointed again with nothing held, and a retry works", async () => {
    const id = await checkpointed();
    f.host.failRestore = "Error (criu/cr-restore.c:1): something";
    const e = await f.cp.restore(id, {}).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(PreconditionError);
    expect((e as Error).message).toBe(`Cannot restore image ${id.slice(0, 12)} as pod "web": Error (criu/cr-restore.c:1): something; the image is intact`);
    expect(f.host.calls).toContain(`removeCriuLock ${NETNS}`);
    expect(f.host.criuLocked.size).toBe(0);
    expect(f.host.callsOf("continue", "unlockNetwork")).toEqual([]);
    expect(f.pods.get("web").state).toBe("checkpointed");
    // What the restore made for the pod (network, cgroup) is released again.
    expect(f.podHost.netns.has("autopod-k1-web")).toBe(false);
    expect(f.podHost.cgroups.size).toBe(0);
    expect(f.catalogue.has(id)).toBe(true);
    expect(leftovers(f)).toEqual([]);
    f.host.failRestore = null;
    expect((await f.cp.restore(id, {})).pod.state).toBe("running");
  });

  test("CRIU fails for a pod made for the restore: the pod goes", async () => {
    const id = await checkpointed();
    f.host.failRestore = "no";
    await f.cp.restore(id, { name: "copy", ip: "10.213.7.5/29" }).catch(() => undefined);
    expect(f.pods.list().map((p) => p.name)).toEqual(["web"]);
    expect(leftovers(f)).toEqual([]);
  });

  test("a damaged page image: the restored tasks, still stopped, are killed and never continued; the pod stays checkpointed", async () => {
    await runningPod(f);
    // 4 MiB and more of new pages: the store adopts the page image as a pack, and restore links it back, checking it while CRIU runs.
    f.host.pages = randomBytes(5 << 20);
    const { id } = await f.cp.checkpoint("web", stop);
    await f.pods.settled("web");
    f.host.calls.length = 0;
    const pack = flipByteOfPack(f, 5 << 20, 12345);
    const e = await f.cp.restore(id, {}).catch((x: unknown) => x);
    expect((e as Error).message).toMatch(/^Cannot restore image [0-9a-f]{12} as pod "web": .*pages-1\.img.*; the image is intact$/);
    const restoredPid = f.host.nextRestoredPid - 1;
    expect(f.host.callsOf("restore", "kill", "waitGone", "continue", "unlockNetwork")).toEqual([
      `restore ${NETNS} tcp=true stopped=true`,
      `kill ${restoredPid}`,
      `waitGone ${restoredPid}`,
    ]);
    expect(f.host.isAlive(restoredPid)).toBe(false);
    expect(f.pods.get("web").state).toBe("checkpointed");
    expect(f.catalogue.has(id)).toBe(true);
    expect(leftovers(f)).toEqual([]);
    // Repaired, the same image restores.
    flipByteOfPack(f, 5 << 20, 12345, pack);
    expect((await f.cp.restore(id, {})).pod.state).toBe("running");
  });
});

describe("a restore that cannot work is refused before anything changes", () => {
  test("a host whose CPU lacks a feature the image's processes may use", async () => {
    const id = await checkpointed();
    f.host.flags = ["fpu"];
    const e = await f.cp.restore(id, {}).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(PreconditionError);
    expect((e as Error).message).toBe("This host's CPU lacks features the image's processes may use: avx2, sse4_2; restore it on a host that has them");
    expect(f.host.calls).toEqual([]);
    expect(f.pods.get("web").state).toBe("checkpointed");
  });

  test("a pod of that name that runs", async () => {
    await runningPod(f);
    const { id } = await f.cp.checkpoint("web", { leaveRunning: true, excludeVolumes: [] });
    f.host.calls.length = 0;
    const e = await f.cp.restore(id, {}).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ConflictError);
    expect((e as Error).message).toBe('Pod "web" already exists and is running: restore under another name with --name');
    expect(f.host.calls).toEqual([]);
  });

  test("no room for the image", async () => {
    const id = await checkpointed();
    f.host.free = 1 << 20;
    const e = await f.cp.restore(id, {}).catch((x: unknown) => x);
    expect((e as Error).message).toMatch(/^Not enough free space to restore: .* needed under .*, 1 MiB free$/);
    expect(f.host.calls).toEqual([]);
  });
});

/** Flip one byte of the pack of `size` bytes (the adopted page image), or put back the byte given; the byte it found. */
function flipByteOfPack(f: Fixture, size: number, at: number, restore?: number): number {
  const dir = join(f.store.dir, "packs");
  const packs = readdirSync(dir, { recursive: true })
    .map((p) => join(dir, String(p)))
    .filter((p) => statSync(p).isFile() && statSync(p).size === size);
  expect(packs.length).toBe(1);
  const fd = openSync(packs[0]!, "r+");
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, at);
    const was = b[0]!;
    b[0] = restore ?? was ^ 0xff;
    writeSync(fd, b, 0, 1, at);
    return was;
  } finally {
    closeSync(fd);
  }
}

describe("the CPU features an image needs", () => {
  test("the image records what its pod may use; a host without one of them is refused before anything changes", async () => {
    f.close();
    // Started with a baseline that leaves out avx2, which this (fake) host has.
    f = makeFixture({ cpuPlan: () => ({ hidden: ["AVX2"], features: ["fpu", "sse4_2"] }) });
    const id = await checkpointed();
    expect(f.catalogue.manifest(id).cpuFlags).toEqual(["fpu", "sse4_2"]);
    f.host.flags = ["avx2", "fpu"];
    const e = await f.cp.restore(id, { name: "copy", ip: "10.213.7.5/29" }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(MissingCpuFeaturesError);
    expect((e as MissingCpuFeaturesError).missing).toEqual(["sse4_2"]);
    expect((e as Error).message).toContain("lacks features the image's processes may use: sse4_2");
    expect(f.host.calls).toEqual([]);
    expect(leftovers(f)).toEqual([]);
    expect(f.pods.list().map((p) => p.name)).toEqual(["web"]);
    // A host that has them (it lacks avx2, which the pod does not use) restores it, and the pod keeps what it may use.
    f.host.flags = ["fpu", "sse4_2"];
    const r = await f.cp.restore(id, { name: "copy", ip: "10.213.7.5/29" });
    expect(r.pod.cpuHidden).toEqual(["AVX2"]);
    expect(f.pods.record("copy").spec.cpu).toEqual({ hidden: ["AVX2"], features: ["fpu", "sse4_2"] });
  });
});

describe("what the host's kernel and programs must give a restore", () => {
  test("a host without tar or gzip, which CRIU runs to restore tmpfs mounts, is refused before anything changes, naming them", async () => {
    f.host.dumpFiles = { "tmpfs-dev-43.tar.gz.img": "tar" };
    const id = await checkpointed();
    f.host.missingPrograms = new Set(["tar", "gzip"]);
    const e = await f.cp.restore(id, { name: "copy", ip: "10.213.7.5/29" }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(PreconditionError);
    expect((e as Error).message).toBe(
      'This host has no "tar" and "gzip", which CRIU runs to restore the image\'s tmpfs mounts: install it (apt-get install tar gzip) and restore again',
    );
    expect(f.host.calls).toEqual([]);
    expect(leftovers(f)).toEqual([]);
    expect(f.pods.list().map((p) => p.name)).toEqual(["web"]);
    f.host.missingPrograms = new Set(["gzip"]);
    expect(((await f.cp.restore(id, { name: "copy", ip: "10.213.7.5/29" }).catch((x: unknown) => x)) as Error).message).toContain('This host has no "gzip"');
    // With them, it restores.
    f.host.missingPrograms = new Set();
    expect((await f.cp.restore(id, { name: "copy", ip: "10.213.7.5/29" })).pod.state).toBe("running");
  });

  test("an image without tmpfs mounts does not need tar", async () => {
    const id = await checkpointed();
    f.host.missingPrograms = new Set(["tar", "gzip"]);
    expect((await f.cp.restore(id, { name: "copy", ip: "10.213.7.5/29" })).pod.state).toBe("running");
  });

  test("a kernel without nftables (the network lock) is refused before anything changes, saying why", async () => {
    const id = await checkpointed();
    f.host.noNftables = "this kernel has no nftables (`nft list tables`: Operation not supported)";
    const e = await f.cp.restore(id, { name: "copy", ip: "10.213.7.5/29" }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(PreconditionError);
    expect((e as Error).message).toBe("This host cannot restore the pod: this kernel has no nftables (`nft list tables`: Operation not supported)");
    expect(f.host.calls).toEqual([]);
    expect(leftovers(f)).toEqual([]);
    expect(f.pods.list().map((p) => p.name)).toEqual(["web"]);
  });
});
