/** The processes of a pod, found by its pid namespace; and stopping or continuing them all. */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";

function pidNsOf(pid: number, proc: string): string | null {
  try {
    return readlinkSync(`${proc}/${pid}/ns/pid`);
  } catch {
    return null;
  }
}

/** Host pids of every process in the same pid namespace as `pid` (the pod's pid 1). */
export function podPids(pid: number, proc = "/proc"): number[] {
  const ns = pidNsOf(pid, proc);
  if (ns === null) return [];
  const out: number[] = [];
  for (const name of readdirSync(proc)) {
    if (!/^\d+$/.test(name)) continue;
    const p = Number(name);
    if (pidNsOf(p, proc) === ns) out.push(p);
  }
  return out;
}

/** SIGCONT to every process of the pod (`pids`: podPids(pid), when the caller has them already): undoes `criu dump --leave-stopped`. */
export function continuePod(pid: number, pids = podPids(pid)): number {
  for (const p of pids) {
    try {
      process.kill(p, "SIGCONT");
    } catch {
      // gone meanwhile
    }
  }
  return pids.length;
}

/** SIGKILL to the pod's pid 1 ends every process of its pid namespace. */
export function killPod(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // already gone
  }
}

/** Wait until `pid` is gone or reaped (a zombie counts as gone). */
export async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      const stat = await Bun.file(`/proc/${pid}/stat`).text();
      if (/\) Z /.test(stat)) return true;
    } catch {
      return true;
    }
    if (performance.now() > deadline) return false;
    await Bun.sleep(5);
  }
}

/** pid -> parent pid of every process, from /proc/PID/stat. */
function parentsOf(proc: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const name of readdirSync(proc)) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`${proc}/${name}/stat`, "utf8");
      // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")".
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (Number.isInteger(ppid)) out.set(Number(name), ppid);
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** `pid` and all its descendants, parents before children. */
export function processTree(pid: number, proc = "/proc"): number[] {
  const parents = parentsOf(proc);
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) for (const [p, pp] of parents) if (pp === tree[i]) tree.push(p);
  return tree;
}

/** SIGKILL `pid` and every process under it, so no grandchild is left orphaned (an exec'd command's children). */
export function killTree(pid: number): void {
  // Twice: a process may fork between the listing and the kill.
  for (let pass = 0; pass < 2; pass++) {
    for (const p of processTree(pid).reverse()) {
      try {
        process.kill(p, "SIGKILL");
      } catch {
        // gone already
      }
    }
  }
}

/** A process in a pod that is not under its pid 1: started by `autopod exec`. */
export interface StrayProcess {
  pid: number;
  command: string;
}

/** State letter and parent of a process, read now; null when it is gone. */
function stateAndParent(pid: number, proc: string): { state: string; ppid: number } | null {
  try {
    const stat = readFileSync(`${proc}/${pid}/stat`, "utf8");
    const [state, ppid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { state: state ?? "?", ppid: Number(ppid) };
  } catch {
    return null;
  }
}

/**
 * Processes in the pod's pid namespace outside the tree of its pid 1 (CRIU dumps only that
 * tree): each one's ancestry is read at the time of asking, so a child forked meanwhile
 * inside the tree is not mistaken for one. Zombies and processes gone meanwhile are left out.
 */
export function processesOutsideTree(pid: number, proc = "/proc"): StrayProcess[] {
  const ns = pidNsOf(pid, proc);
  if (ns === null) return [];
  const out: StrayProcess[] = [];
  // What each visited process turned out to be (true: outside the tree), so a walk stops at a known one.
  const known = new Map<number, boolean>([[pid, false]]);
  for (const p of podPids(pid, proc)) {
    const path: number[] = [];
    let at = p;
    let isStray = false;
    for (let depth = 0; depth < 4096; depth++) {
      const k = known.get(at);
      if (k !== undefined) {
        isStray = k;
        break;
      }
      path.push(at);
      const sp = stateAndParent(at, proc);
      if (sp === null || sp.state === "Z" || sp.state === "X") break; // gone: not ours to report
      if (pidNsOf(sp.ppid, proc) !== ns) {
        isStray = true; // its parent is outside the pod: nsenter of an exec
        break;
      }
      at = sp.ppid;
    }
    for (const q of path) known.set(q, isStray);
    if (!isStray) continue;
    let command = "";
    try {
      command = readFileSync(`${proc}/${p}/cmdline`, "utf8").split("\0").filter(Boolean).join(" ");
    } catch {
      continue; // gone meanwhile
    }
    const now = stateAndParent(p, proc);
    if (now === null || now.state === "Z") continue;
    out.push({ pid: p, command });
  }
  return out.sort((a, b) => a.pid - b.pid);
}
