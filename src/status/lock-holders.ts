/**
 * Who holds a package manager's lock files, found without taking the locks:
 * /proc/locks, matched to each file's device and inode, and /proc/PID/fd for
 * locks the kernel does not attribute to a pid.
 */
import { readdir, readFile, readlink, stat } from "node:fs/promises";
import { join } from "node:path";
import { parseProcLocks, splitDev } from "./proc-locks.ts";

export interface LockHolder {
  path: string;
  pid?: number;
  command?: string;
}

/** The locks held (not merely waited for) on any of these files. */
export async function findLockHolders(files: readonly string[], procDir = "/proc"): Promise<LockHolder[]> {
  const ids = new Map<string, string>();
  for (const path of files) {
    try {
      const st = await stat(path, { bigint: true });
      const { major, minor } = splitDev(st.dev);
      ids.set(`${major}:${minor}:${st.ino}`, path);
    } catch {
      // A lock file that does not exist is not held.
    }
  }
  if (ids.size === 0) return [];
  let text: string;
  try {
    text = await readFile(join(procDir, "locks"), "utf8");
  } catch {
    return [];
  }
  const out: LockHolder[] = [];
  const seen = new Set<string>();
  for (const lock of parseProcLocks(text)) {
    if (lock.waiting || lock.access !== "WRITE") continue; // readers do not keep a package manager out
    const path = ids.get(`${lock.major}:${lock.minor}:${lock.inode}`);
    if (path === undefined) continue;
    const pids = lock.pid > 0 ? [lock.pid] : await pidsWithOpen(path, procDir);
    if (pids.length === 0) pids.push(-1);
    for (const pid of pids) {
      const key = `${path}\0${pid}`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.push(pid > 0 ? { path, pid, command: await commandOf(pid, procDir) } : { path });
    }
  }
  return out;
}

/** Wait until none of the files is locked, or the time is up; returns who still holds them. */
export async function waitForLockRelease(files: readonly string[], timeoutMs: number, procDir = "/proc", pollMs = 100): Promise<LockHolder[]> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const holders = await findLockHolders(files, procDir);
    if (holders.length === 0) return [];
    const left = deadline - performance.now();
    if (left <= 0) return holders;
    await Bun.sleep(Math.min(pollMs, left));
  }
}

/** A sentence naming who holds what, e.g. `"/var/lib/dpkg/lock" is held by pid 42 (apt-get)`. */
export function describeHolders(holders: readonly LockHolder[]): string {
  return holders
    .map((h) => `"${h.path}" is held by ${h.pid === undefined ? "an unknown process" : `pid ${h.pid}${h.command ? ` (${h.command})` : ""}`}`)
    .join(", ");
}

async function commandOf(pid: number, procDir: string): Promise<string | undefined> {
  try {
    return (await readFile(join(procDir, String(pid), "comm"), "utf8")).trim();
  } catch {
    return undefined;
  }
}

async function pidsWithOpen(path: string, procDir: string): Promise<number[]> {
  const pids: number[] = [];
  let entries: string[];
  try {
    entries = await readdir(procDir);
  } catch {
    return pids;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    let fds: string[];
    try {
      fds = await readdir(join(procDir, e, "fd"));
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if ((await readlink(join(procDir, e, "fd", fd))) === path) {
          pids.push(Number(e));
          break;
        }
      } catch {
        // fd closed meanwhile
      }
    }
  }
  return pids;
}
