/**
 * The output of `apt-get --simulate dist-upgrade`: what apt would install,
 * upgrade and remove, each candidate with the archives it comes from. apt
 * prints an archive as "Label:Version/Suite" (pkgCache::VerIterator::RelStr).
 */

export interface AptArchiveRef {
  /** The text as apt printed it, e.g. "Debian-Security:12/oldstable-security". */
  text: string;
  label?: string;
  version?: string;
  /** The archive's suite, or the host name of an archive without a Release file. */
  suite: string;
}

export interface AptPlannedInstall {
  /** Package name; "name:arch" for a foreign architecture. */
  name: string;
  /** Installed version; absent for a package apt would newly install. */
  installed?: string;
  candidate: string;
  arch: string;
  archives: AptArchiveRef[];
}

export interface AptSimulation {
  installs: AptPlannedInstall[];
  removals: Array<{ name: string; installed?: string }>;
  /** Packages apt would not upgrade (held, or blocked by dependencies). */
  keptBack: string[];
}

const INST = /^Inst (\S+) (?:\[([^\]]*)\] )?\((\S+)(?: (.*?))? \[([^\]]+)\]\)/;
const REMV = /^Remv (\S+)(?: \[([^\]]*)\])?/;

/** Parse one archive as apt prints it: "Label:Version/Suite", "Label:Suite", "Version/Suite", "Suite" or a host name. */
export function parseArchiveRef(text: string): AptArchiveRef {
  let rest = text;
  let label: string | undefined;
  const colon = rest.indexOf(":");
  if (colon !== -1) {
    label = rest.slice(0, colon);
    rest = rest.slice(colon + 1);
  }
  const slash = rest.indexOf("/");
  if (slash === -1) return { text, label, suite: rest };
  return { text, label, version: rest.slice(0, slash), suite: rest.slice(slash + 1) };
}

/** Parse the whole simulation; lines it does not know are ignored. */
export function parseAptSimulation(text: string): AptSimulation {
  const sim: AptSimulation = { installs: [], removals: [], keptBack: [] };
  let inKeptBack = false;
  for (const line of text.split("\n")) {
    if (inKeptBack) {
      if (line.startsWith("  ")) {
        sim.keptBack.push(...line.trim().split(/\s+/));
        continue;
      }
      inKeptBack = false;
    }
    if (line.startsWith("The following packages have been kept back")) {
      inKeptBack = true;
      continue;
    }
    let m = INST.exec(line);
    if (m) {
      const archives = (m[4] ?? "")
        .split(", ")
        .filter((s) => s !== "")
        .map(parseArchiveRef);
      sim.installs.push({ name: m[1]!, installed: m[2] || undefined, candidate: m[3]!, arch: m[5]!, archives });
      continue;
    }
    m = REMV.exec(line);
    if (m) sim.removals.push({ name: m[1]!, installed: m[2] || undefined });
  }
  return sim;
}
