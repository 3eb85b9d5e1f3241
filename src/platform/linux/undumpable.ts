/**
 * Kernel objects in a pod that CRIU cannot dump, found before a checkpoint starts so it can be refused
 * with the cause and the fix instead of CRIU's error from the middle of a dump.
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { podPids } from "./pod-procs.ts";

/** A process of a pod holding something CRIU cannot dump. */
export interface UndumpableResource {
  pid: number;
  /** The process's name (/proc/PID/comm). */
  command: string;
  /** "io_uring": an io_uring instance (CRIU 4.2 has no support for them). */
  resource: "io_uring";
}

/** io_uring instances show as this file in /proc/PID/fd and /proc/PID/maps. */
const IO_URING = "anon_inode:[io_uring]";

/** Whether a process holds an io_uring: an open ring fd, or a ring still mapped after its fd was closed. */
export function holdsIoUring(pid: number, proc = "/proc"): boolean {
  try {
    for (const fd of readdirSync(`${proc}/${pid}/fd`)) {
      try {
        if (readlinkSync(`${proc}/${pid}/fd/${fd}`) === IO_URING) return true;
      } catch {
        // closed meanwhile
      }
    }
    return readFileSync(`${proc}/${pid}/maps`, "utf8").includes(IO_URING);
  } catch {
    return false; // gone
  }
}

/** Every process of the pod whose pid 1 is `pid` that holds something CRIU cannot dump. */
export function undumpableResources(pid: number, proc = "/proc"): UndumpableResource[] {
  const out: UndumpableResource[] = [];
  for (const p of podPids(pid, proc)) {
    if (!holdsIoUring(p, proc)) continue;
    let command = "?";
    try {
      command = readFileSync(`${proc}/${p}/comm`, "utf8").trim();
    } catch {
      continue; // gone
    }
    out.push({ pid: p, command, resource: "io_uring" });
  }
  return out;
}
