/**
 * Running a program from inside cgroups: `autopod __exec-in-cgroup DIR...
 * -- PROG ARGS...` joins each cgroup, then becomes PROG; joinCgroupsArgv
 * builds the same with a fixed shell script instead (no 100 MB binary to
 * start; the directories and argv are its arguments, never its text). CRIU
 * restore runs through it (with --manage-cgroups=ignore), so the restored
 * pod's processes are born in the pod's own cgroups, whatever cgroup paths
 * the image recorded on the host it came from; so do pods and execs on v1
 * hosts, where cpu and pids are hierarchies apart from memory.
 */
import { existsSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { selfArgv } from "./launcher.ts";
import { execve } from "./libc.ts";

function isCgroupDir(dir: string): boolean {
  return resolve(dir) === dir && dir.startsWith("/sys/fs/cgroup/") && !dir.includes("\n");
}

const JOIN_SCRIPT = 'for d; do [ "$d" = -- ] && break; echo 0 > "$d/cgroup.procs" || exit 126; shift; done; shift; exec "$@"';

/** argv that joins `dirs` (in order) and then execs `argv`; argv itself when there are none. */
export function joinCgroupsArgv(dirs: string[], argv: string[]): string[] {
  if (dirs.length === 0) return argv;
  if (!dirs.every(isCgroupDir)) throw new Error(`Not cgroup directories under /sys/fs/cgroup: ${dirs.map((d) => JSON.stringify(d)).join(", ")}`);
  // sh -c SCRIPT NAME ARGS: $0 is NAME, the loop walks ARGS.
  if (existsSync("/bin/sh")) return ["/bin/sh", "-c", JOIN_SCRIPT, "autopod-join-cgroups", ...dirs, "--", ...argv];
  return [...selfArgv(), "__exec-in-cgroup", ...dirs, "--", ...argv];
}

export function execInCgroup(argv: string[]): number {
  const sep = argv.indexOf("--");
  const dirs = sep < 0 ? [] : argv.slice(0, sep);
  const [prog, ...args] = sep < 0 ? [] : argv.slice(sep + 1);
  if (dirs.length === 0 || !prog) {
    process.stderr.write("usage: autopod __exec-in-cgroup DIR... -- PROG [ARGS...]\n");
    return 2;
  }
  for (const dir of dirs) {
    if (!isCgroupDir(dir)) {
      process.stderr.write(`__exec-in-cgroup: "${dir}" is not a cgroup directory under /sys/fs/cgroup\n`);
      return 2;
    }
  }
  for (const dir of dirs) writeFileSync(`${dir}/cgroup.procs`, "0\n");
  const env = Object.entries(process.env).map(([k, v]) => `${k}=${v}`);
  execve(prog, [prog, ...args], env);
}
