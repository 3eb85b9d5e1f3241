/** The Linux PodHost: namespaces, mounts, cgroups and processes for pods. */
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { podEnvironment, type PodRuntimeInfo, type PodSpec } from "../../pods/pod.ts";
import type { PodHost } from "../pod-host.ts";
import * as cgroup from "./cgroup.ts";
import { run, which } from "./exec.ts";
import { launchPod, podInitConfiguresNetwork } from "./launcher.ts";
import { decodeWaitStatus, mount, reapIfExited, umountDetach } from "./libc.ts";
import * as netns from "./netns.ts";
import { POD_LOG_PATH, type PodInitPlan } from "./pod-init-plan.ts";
import { podMountLayout } from "./pod-shape.ts";
import { execInPod } from "./pod-exec.ts";
import * as routed from "./routed.ts";
import { readProcStat } from "./proc.ts";
import { findExecutableInRoot, resolveInRoot } from "./root-path.ts";

function layer(rt: PodRuntimeInfo) {
  return {
    upper: join(rt.layerDir, "upper"),
    work: join(rt.layerDir, "work"),
    root: join(rt.layerDir, "root"),
    plan: join(rt.layerDir, "launch.json"),
  };
}

/** Where the pod's volumes are mounted, with symlinks of the base resolved as pod-init will. */
function volumeTargets(spec: PodSpec): Array<{ host: string; pod: string; readonly: boolean }> {
  return spec.volumes.map((v) => ({ host: v.host, pod: resolveInRoot(spec.rootfs, v.pod).inRoot, readonly: v.readonly }));
}

function overlayMountData(spec: PodSpec, rt: PodRuntimeInfo): string {
  const l = layer(rt);
  return `lowerdir=${spec.rootfs},upperdir=${l.upper},workdir=${l.work}`;
}

/** Mount points strictly under or at `dir` in our mount namespace, deepest first. */
function mountsUnder(dir: string): string[] {
  const entries = cgroup.parseMountinfo(readFileSync("/proc/self/mountinfo", "utf8"));
  return entries
    .map((e) => e.mountpoint)
    .filter((mp) => mp === dir || mp.startsWith(dir + "/"))
    .sort((a, b) => b.length - a.length);
}

export const linuxPodHost: PodHost = {
  async setUpNetwork(c) {
    if (c.routed) {
      await routed.enableRoutedHost(c.routed.lanInterface);
      return;
    }
    await netns.ensureBridge(c.bridge, c.gatewayCidr);
    await netns.setNat(c.nat, c.natTable, c.subnet, c.bridge);
  },

  pathKind(path) {
    try {
      const st = statSync(path);
      return st.isDirectory() ? "dir" : st.isFile() ? "file" : "other";
    } catch {
      return null;
    }
  },
  realPath: (path) => realpathSync(path),
  findExecutable: (root, cmd, pathVar) => findExecutableInRoot(root, cmd, pathVar),

  cgroupDir(agentKey, pod) {
    const h = cgroup.memoryHierarchy();
    return h ? cgroup.podCgroupPath(h, agentKey, pod) : null;
  },
  hasCgroupController: (c) => cgroup.hierarchyOf(c) !== null,
  createCgroup(dir, limits) {
    const h = cgroup.memoryHierarchy();
    if (!h) throw new Error("This host has no memory cgroup controller");
    // A leftover of an earlier pod of the same name, now empty, must not carry its counters over.
    if (existsSync(dir) && cgroup.cgroupPids(dir).length === 0) {
      try {
        rmdirSync(dir); // rmSync refuses directories (EISDIR); an empty cgroup goes with rmdir
      } catch {
        // busy (a child cgroup): keep it, counters and all
      }
    }
    cgroup.createPodCgroup(h, dir, limits.memoryBytes);
    cgroup.limitPodCgroup(dir, limits);
  },
  limitCgroup: (dir, limits) => cgroup.limitPodCgroup(dir, limits),
  readUsage: (dir) => cgroup.readPodUsage(dir),
  readMemory(dir) {
    const h = cgroup.memoryHierarchy();
    return h ? cgroup.readMemoryUse(h, dir) : null;
  },
  cgroupPids: (dir) => cgroup.cgroupPids(dir),
  removeCgroup: (dir) => cgroup.removePodCgroup(dir),

  async createNetwork(n) {
    // The small init configures the pod's side from inside: one `ip` spawn fewer, done while the root is built.
    const isPodSideLeft = n.mayLeavePodSide === true && !n.isLocked && podInitConfiguresNetwork();
    if (isPodSideLeft && !n.routed) {
      // On a bridge it makes the namespace and the veth pair too (rtnetlink): no `ip` spawn at all.
      // What an earlier crash left under these names goes first (nothing is spawned when there is none).
      await netns.deletePodNetwork(n);
      return { isPodSideLeft, isNamespaceLeft: true };
    }
    const made = { ...n, isPodSideLeft };
    await (n.routed ? routed.createRoutedPodNetwork({ ...made, lanInterface: n.routed.lanInterface }) : netns.createPodNetwork(made));
    return { isPodSideLeft };
  },
  deleteNetwork: (n) => netns.deletePodNetwork(n),
  announceAddress: (lan, address) => routed.announce(lan, address),
  netnsPath: (name) => netns.netnsPath(name),
  netnsInode: (name) => netns.netnsInode(name),

  mountLayout(spec, rootKind) {
    return podMountLayout(volumeTargets(spec), rootKind);
  },

  async prepareLayer(spec, rt) {
    await this.removeLayer(rt);
    const l = layer(rt);
    mkdirSync(rt.layerDir, { recursive: true, mode: 0o700 });
    if (rt.rootKind === "overlay") {
      for (const d of [l.upper, l.work, l.root]) mkdirSync(d, { mode: 0o755 });
      return;
    }
    const r = await run([which("cp") ?? "cp", "-a", "--reflink=auto", "--", spec.rootfs, l.root], { timeoutMs: 600_000 });
    if (r.exitCode !== 0) throw new Error(`Cannot copy "${spec.rootfs}": ${r.stderr.trim()}`);
  },

  async mountRootOnHost(spec, rt) {
    const l = layer(rt);
    if (rt.rootKind === "overlay" && !mountsUnder(l.root).includes(l.root)) mount("overlay", l.root, "overlay", 0, overlayMountData(spec, rt));
    return l.root;
  },

  async unmountRootOnHost(rt) {
    const root = layer(rt).root;
    if (mountsUnder(root).includes(root)) umountDetach(root);
  },

  async removeLayer(rt) {
    for (const mp of mountsUnder(rt.layerDir)) umountDetach(mp);
    const left = mountsUnder(rt.layerDir);
    if (left.length) throw new Error(`Cannot remove "${rt.layerDir}": still mounted at ${left.join(", ")}`);
    rmSync(rt.layerDir, { recursive: true, force: true });
  },

  logFile(rt) {
    const l = layer(rt);
    return { dir: rt.rootKind === "overlay" ? l.upper : l.root, rel: POD_LOG_PATH.slice(1) };
  },

  launch(spec, rt, net) {
    const l = layer(rt);
    const plan: PodInitPlan = {
      hostname: spec.hostname,
      root:
        rt.rootKind === "overlay"
          ? { kind: "overlay", mountpoint: l.root, lower: spec.rootfs, upper: l.upper, work: l.work }
          : { kind: "copy", mountpoint: l.root },
      volumes: volumeTargets(spec).map((v) => ({ ...v, isFile: statSync(v.host).isFile() })),
      workdir: spec.workdir,
      cmd: spec.cmd,
      env: Object.entries(podEnvironment(spec)).map(([k, v]) => `${k}=${v}`),
      logPath: POD_LOG_PATH,
      ...(spec.user ? { user: { ...spec.user, isHomeSet: spec.env.HOME !== undefined } } : {}),
    };
    const network = net?.isPodSideLeft ? { address: spec.address, gateway: rt.gateway } : undefined;
    const newNetns = net?.isNamespaceLeft ? { hostVeth: rt.hostVeth, bridge: rt.bridge } : undefined;
    return launchPod({ plan, planPath: l.plan, netns: rt.netns, cgroup: rt.cgroup, ...(network ? { network } : {}), ...(newNetns ? { newNetns } : {}) });
  },

  processIdentity(pid) {
    const st = readProcStat(pid);
    if (!st) return null;
    const exited = st.state === "Z" && st.exitStatus !== null ? decodeWaitStatus(pid, st.exitStatus) : null;
    return { startTime: st.startTime, exited: exited && { code: exited.code, signal: exited.signal } };
  },
  zombieChildren() {
    return childPids().filter((pid) => readProcStat(pid)?.state === "Z");
  },
  reap(pid) {
    const r = reapIfExited(pid);
    return r === null || r === "not-child" ? r : { code: r.code, signal: r.signal };
  },
  signal(pid, sig) {
    try {
      process.kill(pid, sig);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ESRCH") throw e;
    }
  },

  execInPod: (o) => execInPod(o),
};

/** The agent's children, from every one of its threads (a child belongs to the thread that forked it, or the one an orphan was handed to). */
function childPids(): number[] {
  const out = new Set<number>();
  let tasks: string[];
  try {
    tasks = readdirSync("/proc/self/task");
  } catch {
    return [];
  }
  for (const t of tasks) {
    let text = "";
    try {
      text = readFileSync(`/proc/self/task/${t}/children`, "utf8");
    } catch {
      continue; // a thread that ended meanwhile
    }
    for (const w of text.split(" ")) if (/^\d+$/.test(w)) out.add(Number(w));
  }
  return [...out];
}
