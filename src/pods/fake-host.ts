/** An in-memory PodHost for unit tests of the pod runtime: processes, resources and calls, no OS. */
import type { ExitStatus, PodHost, PodLimits, PodProcess, ProcessIdentity, Reaped } from "../platform/pod-host.ts";
import type { PodMount } from "./pod.ts";

interface FakeProcess {
  startTime: number;
  /** Set once it has ended. */
  exit: ExitStatus | null;
  /** Ours to reap (false: adopted from an earlier agent). */
  isChild: boolean;
  reaped: boolean;
  ignoresTerm: boolean;
  cgroup: string | null;
}

export class FakeHost implements PodHost {
  readonly calls: string[] = [];
  readonly procs = new Map<number, FakeProcess>();
  readonly netns = new Set<string>();
  readonly cgroups = new Map<string, { limit: number | null; oomKills: number; cpus: number | null; pidsMax: number | null }>();
  readonly layers = new Set<string>();
  readonly paths = new Map<string, "dir" | "file">([
    ["/base", "dir"],
    ["/base/bin/sleep", "file"],
    ["/data", "dir"],
  ]);
  nextPid = 1000;
  failLaunch: string | null = null;
  /** Pods started by launch ignore SIGTERM (like sleep as pid 1). */
  ignoreTerm = true;

  /** End a process as the kernel would. */
  exit(pid: number, status: ExitStatus): void {
    const p = this.procs.get(pid)!;
    p.exit = status;
  }

  async setUpNetwork() {
    this.calls.push("setUpNetwork");
  }
  pathKind(path: string) {
    return this.paths.get(path) ?? null;
  }
  realPath(path: string) {
    return path;
  }
  findExecutable(root: string, cmd: string) {
    const p = cmd.includes("/") ? cmd : `/bin/${cmd}`;
    return this.paths.get(root + p) === "file" ? p : null;
  }
  cgroupDir(agentKey: string, pod: string) {
    return `/cg/${agentKey}/${pod}`;
  }
  hasCgroupController(_c: "cpu" | "pids") {
    return true;
  }
  createCgroup(dir: string, limits: PodLimits) {
    this.calls.push(`createCgroup ${dir}`);
    this.cgroups.set(dir, { limit: limits.memoryBytes, oomKills: 0, cpus: limits.cpus, pidsMax: limits.pidsMax });
  }
  limitCgroup(dir: string, limits: Pick<PodLimits, "cpus" | "pidsMax">) {
    this.calls.push(`limitCgroup ${dir} cpus=${limits.cpus} pids=${limits.pidsMax}`);
    Object.assign(this.cgroups.get(dir) ?? {}, limits);
  }
  readUsage(dir: string) {
    return this.cgroups.has(dir) ? { cpuSeconds: 1.5, pids: this.cgroupPids(dir).length } : { cpuSeconds: null, pids: null };
  }
  readMemory(dir: string) {
    const c = this.cgroups.get(dir);
    return c ? { current: 4096, limit: c.limit, oomKills: c.oomKills } : null;
  }
  cgroupPids(dir: string) {
    return [...this.procs.entries()].filter(([, p]) => p.exit === null && p.cgroup === dir).map(([pid]) => pid);
  }
  async removeCgroup(dir: string) {
    this.calls.push(`removeCgroup ${dir}`);
    this.cgroups.delete(dir);
  }
  async createNetwork(n: { netns: string }) {
    this.calls.push(`createNetwork ${n.netns}`);
    if (this.netns.has(n.netns)) throw new Error(`netns ${n.netns} exists`);
    this.netns.add(n.netns);
    return { isPodSideLeft: false };
  }
  async announceAddress(lan: string, address: string) {
    this.calls.push(`announceAddress ${lan} ${address}`);
  }
  async deleteNetwork(n: { netns: string }) {
    this.calls.push(`deleteNetwork ${n.netns}`);
    this.netns.delete(n.netns);
  }
  netnsPath(name: string) {
    return `/run/netns/${name}`;
  }
  netnsInode() {
    return 4026531992;
  }
  mountLayout(): PodMount[] {
    return [
      { podPath: "/", kind: "overlay" },
      { podPath: "/dev/null", kind: "bind", hostPath: "/dev/null" },
    ];
  }
  async prepareLayer(_s: unknown, rt: { layerDir: string }) {
    this.calls.push(`prepareLayer ${rt.layerDir}`);
    this.layers.add(rt.layerDir);
  }
  async mountRootOnHost(_s: unknown, rt: { layerDir: string }) {
    return `${rt.layerDir}/root`;
  }
  async unmountRootOnHost(rt: { layerDir: string }) {
    this.calls.push(`unmountRootOnHost ${rt.layerDir}`);
  }
  async removeLayer(rt: { layerDir: string }) {
    this.calls.push(`removeLayer ${rt.layerDir}`);
    this.layers.delete(rt.layerDir);
  }
  logFile(rt: { layerDir: string }) {
    return { dir: `${rt.layerDir}/upper`, rel: ".autopod/pod.log" };
  }
  async launch(_spec: unknown, rt: { cgroup: string | null }) {
    this.calls.push("launch");
    if (this.failLaunch) throw new Error(this.failLaunch);
    const pid = this.nextPid++;
    this.procs.set(pid, { startTime: pid * 10, exit: null, isChild: true, reaped: false, ignoresTerm: this.ignoreTerm, cgroup: rt.cgroup });
    return { pid, startTime: pid * 10 };
  }
  /** A process that some earlier agent started: not our child. */
  adopt(pid: number, startTime: number): void {
    this.procs.set(pid, { startTime, exit: null, isChild: false, reaped: false, ignoresTerm: true, cgroup: null });
  }
  processIdentity(pid: number): ProcessIdentity | null {
    const p = this.procs.get(pid);
    if (!p || p.reaped) return null;
    return { startTime: p.startTime, exited: p.exit };
  }
  zombieChildren(): number[] {
    return [...this.procs].filter(([, p]) => p.isChild && p.exit && !p.reaped).map(([pid]) => pid);
  }
  reap(pid: number): Reaped {
    const p = this.procs.get(pid);
    if (!p?.isChild || p.reaped) return "not-child";
    if (!p.exit) return null;
    p.reaped = true;
    return p.exit;
  }
  signal(pid: number, sig: "SIGTERM" | "SIGKILL") {
    this.calls.push(`signal ${pid} ${sig}`);
    const p = this.procs.get(pid);
    if (!p || p.exit) return;
    if (sig === "SIGKILL") p.exit = { code: null, signal: 9 };
    else if (!p.ignoresTerm) p.exit = { code: 0, signal: null };
  }
  execInPod(_o: Parameters<PodHost["execInPod"]>[0]): PodProcess {
    throw new Error("not in the fake");
  }
}
