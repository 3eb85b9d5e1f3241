/**
 * Which package manager this host has: the distribution's own (os-release
 * ID and ID_LIKE), confirmed by its database on disk. Only that one is run.
 */
import { access, readFile } from "node:fs/promises";
import { type HostPaths, inRoot } from "./host-paths.ts";

export type PackageManager = "apt" | "dnf" | "apk";

/** Parse os-release (KEY=value, values optionally quoted). */
export function parseOsRelease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (!m) continue;
    let v = m[2]!;
    if (/^(["']).*\1$/.test(v)) v = v.slice(1, -1).replace(/\\(["'$`\\])/g, "$1");
    out[m[1]!] = v;
  }
  return out;
}

const FAMILIES: Record<PackageManager, string[]> = {
  apt: ["debian", "ubuntu"],
  dnf: ["fedora", "rhel", "centos", "rocky", "almalinux", "ol", "amzn"],
  apk: ["alpine"],
};

/** Where each manager keeps its database, relative to the root. */
export const PACKAGE_DATABASES: Record<PackageManager, string[]> = {
  apt: ["var/lib/dpkg/status"],
  dnf: ["var/lib/rpm", "usr/lib/sysimage/rpm"],
  apk: ["lib/apk/db/installed"],
};

/** Pick the manager: the distribution's family first, else the only database present. */
export function choosePackageManager(osRelease: Record<string, string>, present: ReadonlySet<PackageManager>): PackageManager | null {
  const ids = [osRelease.ID ?? "", ...(osRelease.ID_LIKE ?? "").split(/\s+/)].filter(Boolean);
  for (const id of ids) {
    for (const [pm, family] of Object.entries(FAMILIES) as Array<[PackageManager, string[]]>) {
      if (family.includes(id) && present.has(pm)) return pm;
    }
  }
  return present.size === 1 ? [...present][0]! : null;
}

/** Detect the host's package manager from its files. */
export async function detectPackageManager(paths: HostPaths): Promise<PackageManager | null> {
  let osRelease: Record<string, string> = {};
  for (const p of ["etc/os-release", "usr/lib/os-release"]) {
    try {
      osRelease = parseOsRelease(await readFile(inRoot(paths, p), "utf8"));
      break;
    } catch {
      // try the next
    }
  }
  const present = new Set<PackageManager>();
  for (const [pm, dbs] of Object.entries(PACKAGE_DATABASES) as Array<[PackageManager, string[]]>) {
    for (const db of dbs) {
      if (await exists(inRoot(paths, db))) {
        present.add(pm);
        break;
      }
    }
  }
  return choosePackageManager(osRelease, present);
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
