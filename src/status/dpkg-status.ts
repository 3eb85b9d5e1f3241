/**
 * The dpkg status database (/var/lib/dpkg/status): which packages are
 * installed, at which version.
 */
import { parseDeb822 } from "./deb822.ts";

export interface DpkgPackage {
  name: string;
  arch: string;
  version: string;
  /** The three words of the Status field: want, error flag, state. */
  want: string;
  flag: string;
  state: string;
  /** Source package name, without the version dpkg sometimes appends in parentheses. */
  source: string;
}

/** States in which the package's files are on disk. */
const ON_DISK = new Set(["installed", "half-installed", "unpacked", "half-configured", "triggers-awaited", "triggers-pending"]);

/** Parse the status database; packages that are only remembered (config-files, not-installed) are kept with their state. */
export function parseDpkgStatus(text: string): DpkgPackage[] {
  const out: DpkgPackage[] = [];
  for (const s of parseDeb822(text)) {
    const name = s.Package;
    if (!name) continue;
    const [want = "", flag = "", state = ""] = (s.Status ?? "").split(/\s+/);
    out.push({
      name,
      arch: s.Architecture ?? "",
      version: s.Version ?? "",
      want,
      flag,
      state,
      source: (s.Source ?? name).split(" ")[0]!,
    });
  }
  return out;
}

/** True when the package's files are on disk (installed, or part-way through dpkg). */
export function isOnDisk(p: DpkgPackage): boolean {
  return ON_DISK.has(p.state) && p.version !== "";
}

/** True when dpkg left the package part-way (an interrupted install or upgrade). */
export function isBroken(p: DpkgPackage): boolean {
  return p.flag === "reinstreq" || (ON_DISK.has(p.state) && p.state !== "installed" && p.state !== "triggers-pending" && p.state !== "triggers-awaited");
}
