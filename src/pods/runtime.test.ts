import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AlreadyExistsError, ConflictError, InvalidArgumentError, NotFoundError, PreconditionError, UnavailableError } from "../errors.ts";
import { createLogger } from "../log.ts";
import { FakeHost } from "./fake-host.ts";
import { externalMountsOf, podEnvironment } from "./pod.ts";
import { PodRuntime } from "./runtime.ts";
import { PodStore } from "./store.ts";

let dir: string;
let store: PodStore;
let host: FakeHost;
let pods: PodRuntime;
const quiet = createLogger({ level: "error", write: () => {} });

function runtime(): PodRuntime {
  return new PodRuntime({ stateDir: "/state", agentKey: "k1", bridge: "br0", subnet: "10.213.7.0/29", layer: "overlay", store, host, log: quiet });
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "autopod-runtime-"));
  store = new PodStore(join(dir, "autopod.db"));
  host = new FakeHost();
  pods = runtime();
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const req = (name: string, extra: Record<string, unknown> = {}) => ({ name, rootfs: "/base", cmd: ["sleep", "1000"], ...extra });

describe("create", () => {
  test("makes the layer, cgroup and network, launches, and records a running pod", async () => {
    const v = await pods.create(req("web"));
    expect(v).toMatchObject({ name: "web", state: "running", pid: 1000, address: "10.213.7.2/29", rootfs: "/base" });
    // The layer (then the cgroup) and the network are made at once; launch waits for all of them.
    expect(host.calls.slice(0, 3).sort()).toEqual(["createCgroup /cg/k1/web", "createNetwork autopod-k1-web", "prepareLayer /state/pods/web"]);
    expect(host.calls.indexOf("prepareLayer /state/pods/web")).toBeLessThan(host.calls.indexOf("createCgroup /cg/k1/web"));
    expect(host.calls[3]).toBe("launch");
    const r = store.get("web")!;
    expect(r.runtime.hostVeth).toMatch(/^ap[0-9a-f]{13}$/);
    expect(r.runtime.gateway).toBe("10.213.7.1");
    expect(r.spec).toMatchObject({ hostname: "web", workdir: "/", memoryBytes: null, volumes: [] });
  });

  test("bad input changes nothing", async () => {
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [req("Bad"), /Invalid pod name "Bad"/],
      [req("x", { rootfs: "/nope" }), /Root file system "\/nope" does not exist/],
      [req("x", { cmd: ["nope"] }), /Command "nope" is not in the root file system/],
      [req("x", { volumes: [{ host: "/missing", pod: "/m", readonly: false }] }), /Volume path "\/missing" does not exist/],
      [req("x", { address: "10.213.8.2/29" }), /outside the pod subnet/],
      [req("x", { address: "10.213.7.2/24" }), /must have the pod subnet's prefix \/29/],
      [req("x", { memoryBytes: 1000 }), /too small/],
    ];
    for (const [r, re] of bad) {
      const e = await pods.create(r as never).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(InvalidArgumentError);
      expect((e as Error).message).toMatch(re);
    }
    expect(host.calls).toEqual([]);
    expect(store.list()).toEqual([]);
  });

  test("a taken name or address is refused before anything changes", async () => {
    await pods.create(req("web", { address: "10.213.7.3/29" }));
    host.calls.length = 0;
    expect(await pods.create(req("web")).catch((e: unknown) => e)).toBeInstanceOf(AlreadyExistsError);
    const e = await pods.create(req("other", { address: "10.213.7.3" })).catch((x: unknown) => x);
    expect((e as Error).message).toBe('Address "10.213.7.3" is in use by another pod');
    expect(host.calls).toEqual([]);
  });

  test("concurrent creates get distinct addresses until the subnet is full", async () => {
    // A /29 has .2 to .6 for pods.
    const results = await Promise.allSettled(["a", "b", "c", "d", "e", "f"].map((n) => pods.create(req(n))));
    const addresses = results.filter((r) => r.status === "fulfilled").map((r) => (r as PromiseFulfilledResult<{ address: string }>).value.address);
    expect(new Set(addresses).size).toBe(5);
    const failed = results.filter((r) => r.status === "rejected") as PromiseRejectedResult[];
    expect(failed.length).toBe(1);
    expect(failed[0]!.reason).toBeInstanceOf(PreconditionError);
    expect(failed[0]!.reason.message).toMatch(/No free address left/);
  });

  test("a failed launch is undone completely", async () => {
    host.failLaunch = 'exec "/bin/sleep": Permission denied';
    const e = await pods.create(req("web")).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(PreconditionError);
    expect((e as Error).message).toBe('Cannot start pod "web": exec "/bin/sleep": Permission denied');
    expect(store.list()).toEqual([]);
    expect(host.netns.size + host.cgroups.size + host.layers.size).toBe(0);
  });
});

describe("watching pods", () => {
  test("poll records an exit code, and an OOM kill with its reason", async () => {
    await pods.create(req("ok"));
    await pods.create(req("hog", { memoryBytes: 32 * 2 ** 20 }));
    host.exit(1000, { code: 3, signal: null });
    host.exit(1001, { code: null, signal: 9 });
    host.cgroups.get("/cg/k1/hog")!.oomKills = 1;
    pods.poll();
    expect(pods.get("ok")).toMatchObject({ state: "exited(3)", pid: null, reason: null });
    expect(pods.get("hog")).toMatchObject({ state: "exited(137)", signal: 9, reason: "OOM-killed: it exceeded its memory limit of 32 MiB" });
  });

  test("recover re-adopts live pods, records the ones that ended, and cleans up interrupted creations", async () => {
    await pods.create(req("alive"));
    await pods.create(req("zombie"));
    await pods.create(req("gone"));
    await pods.create(req("half"));
    // A new agent: none of them is its child any more.
    for (const pid of [1000, 1001, 1002]) host.procs.get(pid)!.isChild = false;
    host.exit(1001, { code: 5, signal: null }); // a zombie nobody reaped
    host.procs.delete(1002); // reaped by someone else
    const half = store.get("half")!;
    store.update({ ...half, state: "creating", pid: null });
    const again = runtime();
    await again.recover();
    expect(again.get("alive").state).toBe("running");
    expect(again.get("zombie").state).toBe("exited(5)");
    expect(again.get("gone")).toMatchObject({ state: "exited(?)", reason: "ended while no agent was watching" });
    expect(() => again.get("half")).toThrow(NotFoundError);
    expect(host.netns.has("autopod-k1-half")).toBe(false);
    // An adopted pod that ends later is still noticed.
    host.exit(1000, { code: null, signal: 15 });
    again.poll();
    expect(again.get("alive")).toMatchObject({ state: "exited(143)", reason: "killed by SIGTERM" });
  });

  test("a pid reused by another process is not our pod", async () => {
    await pods.create(req("web"));
    host.procs.get(1000)!.isChild = false;
    host.procs.get(1000)!.startTime = 1; // same pid, another process
    await runtime().recover();
    expect(pods.get("web").state).toBe("exited(?)");
  });
});

describe("stop and remove", () => {
  test("stop: SIGTERM, then SIGKILL after the grace period", async () => {
    await pods.create(req("stubborn"));
    const v = await pods.stop("stubborn", 0.05);
    expect(v.state).toBe("stopped");
    expect(host.calls.filter((c) => c.startsWith("signal"))).toEqual(["signal 1000 SIGTERM", "signal 1000 SIGKILL"]);
    host.ignoreTerm = false;
    await pods.create(req("polite"));
    host.calls.length = 0;
    expect((await pods.stop("polite", 5)).state).toBe("stopped");
    expect(host.calls).toEqual(["signal 1001 SIGTERM"]);
    // Stopping a stopped pod does nothing.
    expect((await pods.stop("polite", 5)).state).toBe("stopped");
    await expect(pods.stop("ghost", 1)).rejects.toThrow(NotFoundError);
  });

  test("remove refuses a running pod without force; with force it kills and removes everything", async () => {
    await pods.create(req("web"));
    await expect(pods.remove("web", false)).rejects.toThrow(ConflictError);
    expect(pods.get("web").state).toBe("running");
    await pods.remove("web", true);
    expect(store.list()).toEqual([]);
    expect(host.netns.size + host.cgroups.size + host.layers.size).toBe(0);
    expect(host.procs.get(1000)!.exit).toEqual({ code: null, signal: 9 });
    // Name and address are free again.
    expect((await pods.create(req("web"))).address).toBe("10.213.7.2/29");
  });
});

describe("checkpoint and restore hooks", () => {
  test("a checkpointing pod refuses stop, rm and exec; it ends checkpointed or running", async () => {
    await pods.create(req("web"));
    const t = pods.target("web");
    expect(t).toMatchObject({ pid: 1000, netnsPath: "/run/netns/autopod-k1-web" });
    expect(externalMountsOf(t.record.runtime)).toEqual([{ podPath: "/dev/null", key: "dev-null", hostPath: "/dev/null" }]);
    pods.beginCheckpoint("web");
    await expect(pods.stop("web", 1)).rejects.toThrow('Cannot stop pod "web": it is checkpointing');
    await expect(pods.remove("web", true)).rejects.toThrow('Cannot remove pod "web": it is checkpointing');
    expect(() => pods.exec("web", ["ls"])).toThrow(ConflictError);
    // The dump kills the tree: the reaper records it, but the state stays checkpointing.
    host.exit(1000, { code: null, signal: 9 });
    pods.poll();
    expect(pods.get("web").state).toBe("checkpointing");
    expect(pods.endCheckpoint("web", "checkpointed")).toMatchObject({ state: "checkpointed", pid: null, exit: null });

    expect(pods.memoryOf("web")).toBeNull();
    await pods.releaseCheckpointed("web");
    expect(host.netns.has("autopod-k1-web") || host.cgroups.has("/cg/k1/web")).toBe(false);
    expect(host.layers.has("/state/pods/web")).toBe(true);
    expect(pods.target0("web").netnsPath).toBe("/run/netns/autopod-k1-web");

    const prepared = await pods.prepareRestore("web");
    expect(prepared).toMatchObject({ netnsPath: "/run/netns/autopod-k1-web", cgroup: "/cg/k1/web" });
    expect(await pods.mountRestoreRoot("web")).toBe("/state/pods/web/root");
    host.adopt(4242, 77);
    expect(host.netns.has("autopod-k1-web")).toBe(true);
    expect(pods.adoptRestored("web", 4242)).toMatchObject({ state: "running", pid: 4242 });
    expect(pods.memoryOf("web")).toBe(4096);
    expect(store.get("web")!.startTime).toBe(77);
  });

  test("releaseWhenGone: the release waits for pid 1 to go and runs after the answer; restore and rm wait for it", async () => {
    await pods.create(req("web"));
    pods.beginCheckpoint("web");
    // Killed, not yet gone: the pod is checkpointed at once, its resources still held.
    pods.endCheckpoint("web", "checkpointed");
    pods.releaseWhenGone("web", 1000);
    await Bun.sleep(30);
    expect(host.netns.has("autopod-k1-web")).toBe(true);
    expect(pods.get("web").state).toBe("checkpointed");
    const preparing = pods.prepareRestore("web");
    host.exit(1000, { code: null, signal: 9 });
    await pods.settled("web");
    expect(host.procs.get(1000)!.reaped).toBe(true);
    expect(await preparing).toMatchObject({ netnsPath: "/run/netns/autopod-k1-web" });
    // The release happened first (its cgroup removed), then the restore made the network again.
    expect(host.calls.indexOf("removeCgroup /cg/k1/web")).toBeGreaterThan(-1);
    expect(host.calls.indexOf("removeCgroup /cg/k1/web")).toBeLessThan(host.calls.lastIndexOf("createNetwork autopod-k1-web"));
    expect(host.netns.has("autopod-k1-web")).toBe(true);
    pods.abortRestore("web");
    await pods.releaseCheckpointed("web");
    pods.releaseWhenGone("web", 1000); // already reaped: nothing to wait for
    await pods.remove("web", true);
    expect(host.netns.size + host.cgroups.size + host.layers.size).toBe(0);
  });

  test("a checkpoint that leaves the pod running, or finds it dead", async () => {
    await pods.create(req("a"));
    await pods.create(req("b"));
    pods.beginCheckpoint("a");
    expect(pods.endCheckpoint("a", "running")).toMatchObject({ state: "running", pid: 1000 });
    pods.beginCheckpoint("b");
    host.exit(1001, { code: 1, signal: null });
    expect(pods.endCheckpoint("b", "running")).toMatchObject({ state: "exited", pid: null });
    expect(pods.get("b").state).toBe("exited(1)");
  });

  test("a migrated pod is registered checkpointed, with its address reserved", async () => {
    await pods.create(req("here"));
    const spec = { ...store.get("here")!.spec, name: "moved", address: "10.213.7.5/29" };
    expect((await pods.registerCheckpointed(spec)).state).toBe("checkpointed");
    const e = await pods.create(req("x", { address: "10.213.7.5/29" })).catch((x: unknown) => x);
    expect((e as Error).message).toMatch(/in use/);
  });
});

describe("routed pod network", () => {
  function routedRuntime(peerPods: (mayBeUnreachable?: (host: string) => boolean) => Promise<import("./runtime.ts").ClusterPods>): PodRuntime {
    return new PodRuntime({
      stateDir: "/state",
      agentKey: "k1",
      bridge: "br0",
      subnet: "10.213.7.0/29",
      routed: { lanInterface: "lan0", clusterPods: peerPods },
      layer: "overlay",
      store,
      host,
      log: quiet,
    });
  }

  test("allocation skips every address the peers' pods have; pods are /32 behind 169.254.1.1", async () => {
    const r = routedRuntime(async () => [
      { host: "b", pods: [{ name: "x", address: "10.213.7.1/32", live: true }] },
      { host: "c", pods: [{ name: "y", address: "10.213.7.2/32", live: false }] },
    ]);
    const v = await r.create(req("web"));
    expect(v.address).toBe("10.213.7.3/32");
    expect(store.get("web")!.runtime).toMatchObject({ gateway: "169.254.1.1", bridge: "" });
  });

  test("a pod arriving by migration needs only its source to answer the address check; any other pod needs every peer", async () => {
    const asked: string[] = [];
    // b is the source (it holds the pod, live); c is down.
    const r = routedRuntime(async (mayBeUnreachable) => {
      asked.push(`b:${mayBeUnreachable?.("b") ?? false} c:${mayBeUnreachable?.("c") ?? false}`);
      if (!mayBeUnreachable?.("c")) throw new UnavailableError('Cannot make sure the pod address is free in the cluster: Peer "c" refused or unreachable');
      return [
        { host: "b", pods: [{ name: "web", address: "10.213.7.4/32", live: true }] },
        { host: "c", pods: [], unreachable: 'Peer "c" refused or unreachable' },
      ];
    });
    await expect(r.checkAddressInCluster("10.213.7.4/32", "web")).rejects.toThrow(/Cannot make sure the pod address is free/);
    r.expectIncoming("web", "b");
    await expect(r.checkAddressInCluster("10.213.7.4/32", "web")).resolves.toBeUndefined();
    // Another pod's check still needs c.
    await expect(r.checkAddressInCluster("10.213.7.5/32", "other")).rejects.toThrow(/Cannot make sure/);
    r.endIncoming("web");
    await expect(r.checkAddressInCluster("10.213.7.4/32", "web")).rejects.toThrow(/Cannot make sure/);
    expect(asked).toEqual(["b:false c:false", "b:false c:true", "b:false c:false", "b:false c:false"]);
  });

  test("an address a live pod of a peer holds is refused, naming the host, before anything is made", async () => {
    const r = routedRuntime(async () => [{ host: "b", pods: [{ name: "x", address: "10.213.7.4/32", live: true }] }]);
    const e = await r.create(req("web", { address: "10.213.7.4/32" })).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ConflictError);
    expect((e as Error).message).toBe('Address 10.213.7.4 for pod "web" is in use on host "b" by its pod "x": choose another with --ip');
    expect(host.calls).toEqual([]);
    expect(store.list()).toEqual([]);
    await expect(r.checkAddressInCluster("10.213.7.4/32", "web")).rejects.toThrow(/in use on host "b" by its pod "x"/);
    await expect(r.checkAddressInCluster("10.213.7.5/32", "web")).resolves.toBeUndefined();
  });

  test("two hosts allocating at once: the one that finds its new address taken on the recheck picks another", async () => {
    let calls = 0;
    const r = routedRuntime(async () => (calls++ === 0 ? [] : [{ host: "b", pods: [{ name: "x", address: "10.213.7.1/32", live: false }] }]));
    const v = await r.create(req("web"));
    expect(v.address).toBe("10.213.7.2/32");
    expect(calls).toBe(4);
    expect(store.list().map((p) => p.spec.name)).toEqual(["web"]);
  });

  test("two hosts given one address at once: the one that finds it taken on the recheck gives it up", async () => {
    let calls = 0;
    const r = routedRuntime(async () => (calls++ === 0 ? [] : [{ host: "b", pods: [{ name: "x", address: "10.213.7.4/32", live: true }] }]));
    const e = await r.create(req("web", { address: "10.213.7.4/32" })).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ConflictError);
    expect((e as Error).message).toBe('Address 10.213.7.4 for pod "web" was taken on host "b" by its pod "x" at the same time: choose another with --ip');
    expect(calls).toBe(2);
    expect(host.calls).toEqual([]);
    expect(store.list()).toEqual([]);
  });

  test("two hosts restoring one address at once: the one whose recheck sees it arriving elsewhere backs off before announcing it", async () => {
    let arriving = false;
    const r = routedRuntime(async () => (arriving ? [{ host: "b", pods: [{ name: "web", address: "10.213.7.4/32", live: true }] }] : []));
    const spec = {
      name: "web",
      rootfs: "/base",
      cmd: ["sleep", "1"],
      env: {},
      hostname: "web",
      address: "10.213.7.4/32",
      volumes: [],
      memoryBytes: null,
      workdir: "/",
    };
    await r.registerCheckpointed(spec);
    // b's restore registered after our first check, before our recheck.
    arriving = true;
    host.calls.length = 0;
    const e = await r.prepareRestore("web").catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ConflictError);
    expect((e as Error).message).toContain('Address 10.213.7.4 of pod "web" is being taken on host "b" by its pod "web" at the same time');
    expect(host.calls.filter((c) => c.startsWith("createNetwork"))).toEqual([]);
    expect(store.get("web")!.state).toBe("checkpointed");
    // Once b has settled elsewhere (or given up), it goes ahead.
    arriving = false;
    await r.prepareRestore("web");
    expect(host.calls).toContain("createNetwork autopod-k1-web");
  });

  test("a peer that cannot be asked refuses the allocation", async () => {
    const r = routedRuntime(async () => {
      throw new Error('Peer "b" unreachable');
    });
    await expect(r.create(req("web"))).rejects.toThrow(/Peer "b" unreachable/);
    expect(store.list()).toEqual([]);
  });

  test("a pod that ends leaves the host: its network goes", async () => {
    const r = routedRuntime(async () => []);
    await r.create(req("web"));
    host.calls.length = 0;
    host.exit(1000, { code: 0, signal: null });
    r.poll();
    await r.settled("web");
    expect(host.calls).toContain("deleteNetwork autopod-k1-web");
  });
});

describe("CPU baseline", () => {
  const plan = (useBaseline: boolean) =>
    useBaseline ? { hidden: ["AVX2", "FMA"], features: ["fpu", "sse4_2"] } : { hidden: [], features: ["avx2", "fma", "fpu", "sse4_2"] };
  const withPlan = () =>
    new PodRuntime({ stateDir: "/state", agentKey: "k1", bridge: "br0", subnet: "10.213.7.0/29", layer: "overlay", store, host, log: quiet, cpuPlan: plan });

  test("a new pod starts with the baseline: glibc told to leave the features some member lacks, merged with the user's tunables", async () => {
    const p = withPlan();
    const v = await p.create(req("web", { env: { GLIBC_TUNABLES: "glibc.malloc.check=3:glibc.cpu.hwcaps=-ERMS" } }));
    expect(v.cpuHidden).toEqual(["AVX2", "FMA"]);
    const r = store.get("web")!;
    expect(r.spec.env.GLIBC_TUNABLES).toBe("glibc.malloc.check=3:glibc.cpu.hwcaps=-ERMS,-AVX2,-FMA");
    expect(r.spec.cpu).toEqual({ hidden: ["AVX2", "FMA"], features: ["fpu", "sse4_2"] });
    // The pod's command and every `exec` get the environment of its spec.
    expect(podEnvironment(r.spec).GLIBC_TUNABLES).toBe("glibc.malloc.check=3:glibc.cpu.hwcaps=-ERMS,-AVX2,-FMA");
  });

  test("opted out, a pod may use the host's features and its environment is the user's", async () => {
    const p = withPlan();
    await p.create(req("fast", { cpuBaseline: false, env: { A: "1" } }));
    const r = store.get("fast")!;
    expect(r.spec.env).toEqual({ A: "1" });
    expect(r.spec.cpu).toEqual({ hidden: [], features: ["avx2", "fma", "fpu", "sse4_2"] });
  });

  test("a pod restored here keeps what it may use from where it started", async () => {
    const p = withPlan();
    const cpu = { hidden: ["AVX512F"], features: ["avx2", "fpu"] };
    await p.registerCheckpointed({
      name: "moved",
      rootfs: "/base",
      cmd: ["sleep", "1"],
      env: {},
      hostname: "moved",
      address: "10.213.7.3/29",
      volumes: [],
      memoryBytes: null,
      workdir: "/",
      cpu,
    });
    expect(store.get("moved")!.spec.cpu).toEqual(cpu);
  });
});
