/**
 * `autopod __exec-in-cgroup DIR -- PROG ARGS...`: join a cgroup, then become
 * PROG. CRIU restore runs through it (with --manage-cgroups=ignore), so the
 * restored pod's processes are born in the pod's own memory cgroup, whatever
 * cgroup paths the image recorded on the host it came from.
 */
import { writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { execve } from "./libc.ts";

export function execInCgroup(argv: string[]): number {
  const [dir, sep, prog, ...args] = argv;
  if (!dir || sep !== "--" || !prog) {
    process.stderr.write("usage: autopod __exec-in-cgroup DIR -- PROG [ARGS...]\n");
    return 2;
  }
  const abs = resolve(dir);
  if (abs !== dir || !abs.startsWith("/sys/fs/cgroup/")) {
    process.stderr.write(`__exec-in-cgroup: "${dir}" is not a cgroup directory under /sys/fs/cgroup\n`);
    return 2;
  }
  writeFileSync(`${abs}/cgroup.procs`, "0\n");
  const env = Object.entries(process.env).map(([k, v]) => `${k}=${v}`);
  execve(prog, [prog, ...args], env);
}
