/** Reading /proc: process identity (pid + start time) and exit status of zombies. */
import { readFileSync } from "node:fs";

export interface ProcStat {
  pid: number;
  comm: string;
  /** R, S, D, Z (zombie), T, ... */
  state: string;
  ppid: number;
  /** Field 22: clock ticks after boot. With the pid, it names one process for good. */
  startTime: number;
  /** Field 52: the wait(2) status, meaningful once the process is a zombie. */
  exitStatus: number | null;
}

/** Parse /proc/PID/stat. The command name may hold spaces and parentheses: it ends at the last ")". */
export function parseProcStat(text: string): ProcStat {
  const open = text.indexOf("(");
  const close = text.lastIndexOf(")");
  if (open < 0 || close < open) throw new Error(`Cannot parse /proc stat line "${text.slice(0, 80)}"`);
  const rest = text
    .slice(close + 2)
    .trim()
    .split(" ");
  // rest[0] is field 3 (state), so field N is rest[N - 3].
  const field = (n: number) => rest[n - 3];
  const exit = field(52);
  return {
    pid: Number(text.slice(0, open).trim()),
    comm: text.slice(open + 1, close),
    state: field(3) ?? "?",
    ppid: Number(field(4)),
    startTime: Number(field(22)),
    exitStatus: exit === undefined ? null : Number(exit),
  };
}

/** The process's stat, or null when there is no such process. */
export function readProcStat(pid: number): ProcStat | null {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT" || (e as NodeJS.ErrnoException).code === "ESRCH") return null;
    throw e;
  }
}
