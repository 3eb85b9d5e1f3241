/** The processes of a pod, found by its pid namespace; and stopping or continuing them all. */
import { readdirSync, readlinkSync } from "node:fs";

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

/** SIGCONT to every process of the pod: undoes `criu dump --leave-stopped`. */
export function continuePod(pid: number): number {
  const pids = podPids(pid);
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
