/**
 * The versions the security archives offer, read from apt's downloaded
 * Packages lists. A point release can carry a newer version than the security
 * archive (Debian folds security fixes into point releases), so the
 * candidate's own archive does not tell whether a security fix is pending:
 * unattended-upgrades then installs the newest security version instead
 * ("adjust_candidate"). This is what lets the apt check see the same.
 *
 * apt names its list files after the URI: the Release file
 * "<prefix>_InRelease" (or "_Release") and its indexes
 * "<prefix>_<component>_binary-<arch>_Packages[.lz4|.gz|...]", or, for a
 * flat repository, "<prefix>_Packages".
 */
import { join } from "node:path";
import type { AptRelease } from "./apt-release.ts";
import type { Runner } from "./checker.ts";

/** A Packages index and the archive it belongs to. */
export interface AptIndex {
  path: string;
  release: AptRelease;
}

const PACKAGES = /_Packages(\.(gz|xz|lz4|zst|bz2|lzma))?$/;
const RELEASE = /_(In)?Release$/;

/** Pair each Packages list with its Release file: the longest Release prefix of its name. Pure. */
export function pairIndexes(listNames: readonly string[], releases: ReadonlyMap<string, AptRelease>): Array<{ name: string; release: AptRelease }> {
  const prefixes = [...releases.keys()].sort((a, b) => b.length - a.length);
  const out: Array<{ name: string; release: AptRelease }> = [];
  for (const name of listNames) {
    if (!PACKAGES.test(name)) continue;
    const prefix = prefixes.find((p) => name.startsWith(`${p}_`));
    if (prefix !== undefined) out.push({ name, release: releases.get(prefix)! });
  }
  return out;
}

/** The Release file's prefix ("host_path_dists_suite"), or null when the name is not a Release file. */
export function releasePrefix(name: string): string | null {
  return RELEASE.test(name) ? name.replace(RELEASE, "") : null;
}

/** One version of a package an index offers. */
export interface OfferedVersion {
  name: string;
  arch: string;
  version: string;
}

/**
 * The Package, Architecture and Version of every stanza whose package is
 * wanted. Only those three fields are looked at, so a list of 60,000
 * stanzas is read in one pass. Pure.
 */
export function parseOfferedVersions(text: string, wanted: ReadonlySet<string>): OfferedVersion[] {
  const out: OfferedVersion[] = [];
  let name = "";
  let arch = "";
  let version = "";
  const flush = () => {
    if (name && version && wanted.has(name)) out.push({ name, arch, version });
    name = arch = version = "";
  };
  for (const line of text.split("\n")) {
    if (line === "" || line === "\r") flush();
    else if (line.startsWith("Package:")) name = line.slice(8).trim();
    else if (line.startsWith("Version:")) version = line.slice(8).trim();
    else if (line.startsWith("Architecture:")) arch = line.slice(13).trim();
  }
  flush();
  return out;
}

/** apt's helper that reads a list in any of its compressions. */
export const APT_HELPER = "/usr/lib/apt/apt-helper";

/**
 * The versions of the wanted packages offered by the given indexes, read in
 * whatever compression apt kept them (through `apt-helper cat-file`).
 * Throws when a list cannot be read: a security fix must not go unseen.
 */
export async function readOfferedVersions(
  listsDir: string,
  indexes: ReadonlyArray<{ name: string }>,
  wanted: ReadonlySet<string>,
  run: Runner,
  timeoutMs: number,
): Promise<OfferedVersion[]> {
  const out: OfferedVersion[] = [];
  for (const { name } of indexes) {
    const path = join(listsDir, name);
    let text: string;
    if (name.endsWith("_Packages")) text = await Bun.file(path).text();
    else {
      const r = await run([APT_HELPER, "cat-file", path], { timeoutMs, env: { ...process.env, LC_ALL: "C" } });
      if (r.exitCode !== 0 || r.timedOut)
        throw new Error(`Cannot read the package list "${path}": apt-helper cat-file ${r.timedOut ? "timed out" : `exited with status ${r.exitCode}`}`);
      text = r.stdout;
    }
    out.push(...parseOfferedVersions(text, wanted));
  }
  return out;
}
