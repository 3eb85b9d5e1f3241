/**
 * Host directories a pod may never get, as a volume or as its root: one list,
 * used by `run -v`, `run --rootfs` and the shared volumes an image from another
 * host names. Paths are compared after the caller made them canonical
 * (realpath: no ".", "..", "//" or links), and so are the protected ones, so
 * "/.", "//etc", "/etc/cron.d" or a link to /etc are all seen for what they are.
 */
import { normalize } from "node:path";
import { quote } from "../quote.ts";

/**
 * The host's system: its programs and libraries, configuration, boot, kernel
 * interfaces, runtime state, package and service data, logs, spool (cron, mail)
 * and root's home. A pod gets none of them, nor anything under them.
 */
export const SYSTEM_TREES = [
  "/bin",
  "/boot",
  "/dev",
  "/etc",
  "/lib",
  "/lib32",
  "/lib64",
  "/libx32",
  "/opt",
  "/proc",
  "/root",
  "/run",
  "/sbin",
  "/sys",
  "/usr",
  "/var/backups",
  "/var/cache",
  "/var/lib",
  "/var/lock",
  "/var/log",
  "/var/mail",
  "/var/opt",
  "/var/run",
  "/var/spool",
] as const;

/** Directories that hold everyone's data: refused themselves, while a directory under them (/home/alice/data, /srv/nfs) is fine. */
export const SHARED_PARENTS = ["/home", "/media", "/mnt", "/srv", "/tmp", "/var/tmp"] as const;

export interface ProtectedPaths {
  /** The agent's state directory (canonical): its store, its list of trusted images, its pods' layers. */
  stateDir: string;
  /** The agent's own files outside it (the socket), canonical. */
  agentFiles?: string[];
  /** Directories under the state directory the agent itself gives pods (restored volumes and bases). */
  agentGiven?: string[];
}

/** Canonical form of a protected path on this host (/lib may be a link to /usr/lib); missing ones stay as they are. */
export type Canonical = (p: string) => string;

const isUnder = (p: string, dir: string) => p === dir || dir === "/" || p.startsWith(dir + "/");

/**
 * Why the canonical host path `p` may not be given to a pod as a volume, or
 * (`asRoot`) as its root file system, or null when it may. A root is only read
 * (overlay lower) or copied, so it may lie in a system tree; but it may never
 * hold one, nor the agent's files. `what` names the path in the message.
 */
export function whyHostPathIsProtected(p: string, what: string, prot: ProtectedPaths, canonical: Canonical = (x) => x, asRoot = false): string | null {
  if (p === "/") return `${what} ${quote(p)} is the host's root directory`;
  const agent = [prot.stateDir, ...(prot.agentFiles ?? [])];
  const isGiven = (prot.agentGiven ?? []).some((g) => isUnder(p, g) && p !== g);
  for (const a of agent) {
    if (isUnder(p, a) && !isGiven) return `${what} ${quote(p)} is the autopod agent's own (${a}): a pod there could take over the agent`;
    if (isUnder(a, p)) return `${what} ${quote(p)} holds the autopod agent's own files (${a}): a pod there could take over the agent`;
  }
  for (const t of SYSTEM_TREES) {
    for (const s of new Set([t, canonical(t)])) {
      if (isUnder(p, s) && !asRoot) return `${what} ${quote(p)} is a host system directory (${s} and everything under it belongs to the host)`;
      if (isUnder(s, p)) return `${what} ${quote(p)} holds the host system directory ${s}`;
    }
  }
  if (asRoot) return null;
  for (const s of SHARED_PARENTS) {
    if (p === s || p === canonical(s)) return `${what} ${quote(p)} holds every user's data: give the pod a directory under it`;
  }
  return null;
}

/**
 * `p` made canonical with `realpath` applied to its longest existing prefix
 * (links, ".", ".." and "//" resolved as the kernel would), the missing rest
 * appended normalized. For paths that may not exist yet.
 */
export function canonicalPath(p: string, realpath: (p: string) => string): string {
  const parts = p.split("/").filter((s) => s !== "" && s !== ".");
  for (let i = parts.length; i >= 0; i--) {
    let base: string;
    try {
      base = realpath("/" + parts.slice(0, i).join("/"));
    } catch {
      continue;
    }
    return normalize([base, ...parts.slice(i)].join("/")).replace(/(.)\/+$/, "$1");
  }
  return normalize(p);
}
