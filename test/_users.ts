/** The processes of a pod and their credentials, read from /proc on the host. */
import { existsSync, readFileSync } from "node:fs";

/** Every process of a pod (host pids), its first process first. */
export function podTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    const p = out[i]!;
    const tasks = existsSync(`/proc/${p}/task`) ? readFileSync(`/proc/${p}/task/${p}/children`, "utf8") : "";
    out.push(...tasks.split(/\s+/).filter(Boolean).map(Number));
  }
  return out;
}

/** Real, effective, saved and file-system uid and gid, and the supplementary groups, of a process. */
export function credsOf(pid: number): { uid: string; gid: string; groups: string } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, "m").exec(status)?.[1]?.trim().replace(/\s+/g, " ") ?? "";
  return { uid: field("Uid"), gid: field("Gid"), groups: field("Groups") };
}
