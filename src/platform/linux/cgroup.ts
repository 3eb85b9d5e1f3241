/**
 * Pod memory cgroups: v2 where the unified hierarchy has the memory
 * controller, else v1's memory hierarchy (hybrid hosts such as this one).
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

/**
 * Pick the memory hierarchy: cgroup2 when its root lists the memory
 * controller, else the v1 mount with the memory option.
 */
export function pickMemoryHierarchy(mounts: MountinfoEntry[], controllersOf: (mountpoint: string) => string[]): MemoryHierarchy | null {
  for (const m of mounts) {
    if (m.fstype === "cgroup2" && controllersOf(m.mountpoint).includes("memory")) return { version: 2, mountpoint: m.mountpoint };
  }
  for (const m of mounts) {
    if (m.fstype === "cgroup" && m.superOptions.includes("memory")) return { version: 1, mountpoint: m.mountpoint };
  }
  return null;
}

let detected: MemoryHierarchy | null | undefined;

/** This host's memory hierarchy (looked up once). */
export function memoryHierarchy(): MemoryHierarchy | null {
  if (detected !== undefined) return detected;
  detected = pickMemoryHierarchy(parseMountinfo(readFileSync("/proc/self/mountinfo", "utf8")), (mp) => {
    try {
      return readFileSync(join(mp, "cgroup.controllers"), "utf8").trim().split(/\s+/);
    } catch {
      return [];
    }
  });
  return detected;
}

/** The directory of a pod's cgroup: <hierarchy>/autopod/<agent>/<pod>. */
export function podCgroupPath(h: MemoryHierarchy, agentKey: string, pod: string): string {
  return join(h.mountpoint, "autopod", agentKey, pod);
}

/** Create the pod's cgroup with its limit (null: unlimited, but still accounted). */
export function createPodCgroup(h: MemoryHierarchy, dir: string, limitBytes: number | null): void {
  if (h.version === 2) {
    // Each level must hand the memory controller down to the next.
    const rel = dir.slice(h.mountpoint.length).split("/").filter(Boolean);
    let at = h.mountpoint;
    for (const part of rel) {
      enableMemoryController(at);
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

function enableMemoryController(dir: string): void {
  const file = join(dir, "cgroup.subtree_control");
  if (readFileSync(file, "utf8").split(/\s+/).includes("memory")) return;
  writeFileSync(file, "+memory");
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

/** Remove the pod's cgroup, then its agent's parent when that is empty. Missing is fine. */
export async function removePodCgroup(dir: string): Promise<void> {
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
