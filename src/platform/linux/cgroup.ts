/**
 * Pod cgroups: v2 where the unified hierarchy has the memory controller,
 * else v1's memory hierarchy (hybrid hosts such as this one). The pod's
 * cgroup is named by its directory in the memory hierarchy; on v1 the cpu,
 * cpuacct and pids controllers live in hierarchies of their own, where the
 * pod has a directory at the same relative path (its siblings), joined and
 * removed with it. On v2 the one directory holds every controller.
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface MemoryHierarchy {
  version: 1 | 2;
  /** Where the hierarchy is mounted, e.g. /sys/fs/cgroup/memory (v1) or /sys/fs/cgroup (v2). */
  mountpoint: string;
}

export interface MemoryUse {
  /** Bytes charged now. */
  current: number;
  /** The limit in bytes, or null when unlimited. */
  limit: number | null;
  /** How many times the kernel's OOM killer killed a process of this cgroup. */
  oomKills: number;
}

interface MountinfoEntry {
  mountpoint: string;
  fstype: string;
  superOptions: string[];
}

/** The mounts of /proc/self/mountinfo that matter here. */
export function parseMountinfo(text: string): MountinfoEntry[] {
  const out: MountinfoEntry[] = [];
  for (const line of text.split("\n")) {
    const dash = line.indexOf(" - ");
    if (dash < 0) continue;
    const left = line.slice(0, dash).split(" ");
    const right = line.slice(dash + 3).split(" ");
    out.push({ mountpoint: unescapeMount(left[4] ?? ""), fstype: right[0] ?? "", superOptions: (right[2] ?? "").split(",") });
  }
  return out;
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
export function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** The controllers a pod's limits and usage need. cpuacct is v1's CPU time (v2 has it in cpu.stat without a controller). */
export type Controller = "memory" | "cpu" | "cpuacct" | "pids";

/**
 * Pick a controller's hierarchy: cgroup2 when its root lists the controller,
 * else the v1 mount with the controller's option (cpu and cpuacct may share one).
 */
export function pickHierarchy(mounts: MountinfoEntry[], controllersOf: (mountpoint: string) => string[], controller: Controller): MemoryHierarchy | null {
  for (const m of mounts) {
    if (m.fstype === "cgroup2" && controllersOf(m.mountpoint).includes(controller)) return { version: 2, mountpoint: m.mountpoint };
  }
  for (const m of mounts) {
    if (m.fstype === "cgroup" && m.superOptions.includes(controller)) return { version: 1, mountpoint: m.mountpoint };
  }
  return null;
}

/** The memory hierarchy (see pickHierarchy). */
export function pickMemoryHierarchy(mounts: MountinfoEntry[], controllersOf: (mountpoint: string) => string[]): MemoryHierarchy | null {
  return pickHierarchy(mounts, controllersOf, "memory");
}

let detected: Partial<Record<Controller, MemoryHierarchy | null>> | undefined;

/** This host's hierarchy of a controller (looked up once). */
export function hierarchyOf(controller: Controller): MemoryHierarchy | null {
  if (detected === undefined) {
    const mounts = parseMountinfo(readFileSync("/proc/self/mountinfo", "utf8"));
    const controllersOf = (mp: string) => {
      try {
        return readFileSync(join(mp, "cgroup.controllers"), "utf8").trim().split(/\s+/);
      } catch {
        return [];
      }
    };
    detected = {};
    for (const c of ["memory", "cpu", "cpuacct", "pids"] as const) detected[c] = pickHierarchy(mounts, controllersOf, c);
  }
  return detected[controller] ?? null;
}

/** This host's memory hierarchy (looked up once). */
export function memoryHierarchy(): MemoryHierarchy | null {
  return hierarchyOf("memory");
}

/**
 * Where a pod's cgroup is, controller by controller: the pod's directory in
 * the memory hierarchy `dir`, and the same relative path in the hierarchy of
 * each other controller (v1), or `dir` itself (v2, or a shared v1 mount).
 * A controller the host lacks is absent.
 */
export function podCgroupDirs(dir: string, hierarchy: (c: Controller) => MemoryHierarchy | null = hierarchyOf): Partial<Record<Controller, string>> {
  const mem = hierarchy("memory");
  if (!mem || !dir.startsWith(`${mem.mountpoint}/`)) return {};
  const rel = dir.slice(mem.mountpoint.length);
  const out: Partial<Record<Controller, string>> = { memory: dir };
  for (const c of ["cpu", "cpuacct", "pids"] as const) {
    const h = hierarchy(c);
    if (h) out[c] = h.mountpoint === mem.mountpoint ? dir : h.mountpoint + rel;
  }
  return out;
}

/** The pod's directories in hierarchies other than the memory one (v1's cpu, cpuacct, pids), for joining and removal. */
export function siblingDirs(dir: string, hierarchy: (c: Controller) => MemoryHierarchy | null = hierarchyOf): string[] {
  return [...new Set(Object.values(podCgroupDirs(dir, hierarchy)))].filter((d) => d !== dir);
}

/** Limits of a pod's cgroup; null is none. */
export interface CgroupLimits {
  memoryBytes: number | null;
  /** CPUs' worth of time per period (1.5: one and a half CPUs). */
  cpus: number | null;
  pidsMax: number | null;
}

/** CFS bandwidth period: 100 ms, the kernel's default. */
export const CPU_PERIOD_US = 100_000;

/** The quota of `cpus` CPUs per CPU_PERIOD_US (at least the kernel's 1 ms). */
export function cpuQuotaUs(cpus: number): number {
  return Math.max(1000, Math.round(cpus * CPU_PERIOD_US));
}

/** Set (or lift, with null) the cpu and pids limits of an existing pod cgroup. Memory is createPodCgroup's. */
export function limitPodCgroup(dir: string, limits: Pick<CgroupLimits, "cpus" | "pidsMax">): void {
  const dirs = podCgroupDirs(dir);
  if (dirs.cpu) {
    if (hierarchyOf("cpu")!.version === 2) {
      writeFileSync(join(dirs.cpu, "cpu.max"), limits.cpus === null ? `max ${CPU_PERIOD_US}` : `${cpuQuotaUs(limits.cpus)} ${CPU_PERIOD_US}`);
    } else {
      writeFileSync(join(dirs.cpu, "cpu.cfs_period_us"), String(CPU_PERIOD_US));
      writeFileSync(join(dirs.cpu, "cpu.cfs_quota_us"), limits.cpus === null ? "-1" : String(cpuQuotaUs(limits.cpus)));
    }
  } else if (limits.cpus !== null) {
    throw new Error("This host has no cpu cgroup controller");
  }
  if (dirs.pids) writeFileSync(join(dirs.pids, "pids.max"), limits.pidsMax === null ? "max" : String(limits.pidsMax));
  else if (limits.pidsMax !== null) throw new Error("This host has no pids cgroup controller");
}

/** CPU time and process count of a pod's cgroup now; a value the host cannot tell is null. */
export function readPodUsage(dir: string): { cpuSeconds: number | null; pids: number | null } {
  const dirs = podCgroupDirs(dir);
  let cpuSeconds: number | null = null;
  try {
    if (hierarchyOf("memory")!.version === 2) cpuSeconds = (parseKeyValues(readFileSync(join(dir, "cpu.stat"), "utf8")).usage_usec ?? 0) / 1e6;
    else if (dirs.cpuacct) cpuSeconds = Number(readFileSync(join(dirs.cpuacct, "cpuacct.usage"), "utf8")) / 1e9;
  } catch {
    // gone, or no such file on this kernel
  }
  let pids: number | null = null;
  try {
    if (dirs.pids) pids = Number(readFileSync(join(dirs.pids, "pids.current"), "utf8"));
  } catch {
    // as above
  }
  return { cpuSeconds, pids };
}

/** The directory of a pod's cgroup: <hierarchy>/autopod/<agent>/<pod>. */
export function podCgroupPath(h: MemoryHierarchy, agentKey: string, pod: string): string {
  return join(h.mountpoint, "autopod", agentKey, pod);
}

/** Create the pod's cgroup with its memory limit (null: unlimited, but still accounted), and its siblings (v1) for limitPodCgroup. */
export function createPodCgroup(h: MemoryHierarchy, dir: string, limitBytes: number | null): void {
  for (const sibling of siblingDirs(dir)) mkdirSync(sibling, { recursive: true });
  if (h.version === 2) {
    // Each level must hand the controllers down to the next.
    const rel = dir.slice(h.mountpoint.length).split("/").filter(Boolean);
    let at = h.mountpoint;
    for (const part of rel) {
      enableControllers(at);
      at = join(at, part);
      if (!existsSync(at)) mkdirSync(at);
    }
    if (limitBytes !== null) {
      writeFileSync(join(dir, "memory.max"), String(limitBytes));
      // Without this the pod would page out to swap instead of being stopped at its limit.
      if (existsSync(join(dir, "memory.swap.max"))) writeFileSync(join(dir, "memory.swap.max"), "0");
    }
    return;
  }
  mkdirSync(dir, { recursive: true });
  if (limitBytes !== null) {
    writeFileSync(join(dir, "memory.limit_in_bytes"), String(limitBytes));
    if (existsSync(join(dir, "memory.memsw.limit_in_bytes"))) writeFileSync(join(dir, "memory.memsw.limit_in_bytes"), String(limitBytes));
  }
}

/** Hand memory, and cpu and pids where the hierarchy has them, down to the children of `dir` (v2). */
function enableControllers(dir: string): void {
  const file = join(dir, "cgroup.subtree_control");
  const on = readFileSync(file, "utf8").split(/\s+/);
  const available = readFileSync(join(dir, "cgroup.controllers"), "utf8").split(/\s+/);
  for (const c of ["memory", "cpu", "pids"]) if (!on.includes(c) && (c === "memory" || available.includes(c))) writeFileSync(file, `+${c}`);
}

/** Parse "key value" lines (memory.events, memory.oom_control, memory.stat). */
export function parseKeyValues(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split("\n")) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && /^\d+$/.test(v)) out[k] = Number(v);
  }
  return out;
}

// v1 reports "no limit" as the largest page-aligned 64-bit value.
const V1_UNLIMITED = 2 ** 62;

/** What the pod's cgroup uses, its limit and its OOM kills; null when the cgroup is gone. */
export function readMemoryUse(h: MemoryHierarchy, dir: string): MemoryUse | null {
  try {
    if (h.version === 2) {
      const max = readFileSync(join(dir, "memory.max"), "utf8").trim();
      return {
        current: Number(readFileSync(join(dir, "memory.current"), "utf8")),
        limit: max === "max" ? null : Number(max),
        oomKills: parseKeyValues(readFileSync(join(dir, "memory.events"), "utf8")).oom_kill ?? 0,
      };
    }
    const limit = Number(readFileSync(join(dir, "memory.limit_in_bytes"), "utf8"));
    return {
      current: Number(readFileSync(join(dir, "memory.usage_in_bytes"), "utf8")),
      limit: limit >= V1_UNLIMITED ? null : limit,
      oomKills: parseKeyValues(readFileSync(join(dir, "memory.oom_control"), "utf8")).oom_kill ?? 0,
    };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw e;
  }
}

/** The pids in the cgroup. */
export function cgroupPids(dir: string): number[] {
  try {
    return readFileSync(join(dir, "cgroup.procs"), "utf8").split("\n").filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Remove the pod's cgroup and its siblings (v1), then their agent's parents when empty. Missing is fine. */
export async function removePodCgroup(dir: string): Promise<void> {
  for (const d of [...siblingDirs(dir), dir]) await removeOneCgroup(d);
}

async function removeOneCgroup(dir: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      rmdirSync(dir);
      break;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOENT") break;
      // EBUSY while the kernel finishes tearing down the last exiting tasks.
      if (code !== "EBUSY" || attempt >= 50) throw new Error(`Cannot remove cgroup "${dir}": ${(e as Error).message}`);
      await Bun.sleep(20);
    }
  }
  for (const parent of [join(dir, ".."), join(dir, "../..")]) {
    try {
      rmdirSync(parent);
    } catch {
      break; // not empty (other pods or agents), or already gone
    }
  }
}
