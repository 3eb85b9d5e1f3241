/**
 * The apt check: pending updates on Debian and Ubuntu, from apt's own
 * resolver (`apt-get --simulate dist-upgrade`, which honours pinning and
 * never changes the package database or touches the network). A pending
 * update is a security update when its candidate comes from a security
 * archive, or when a security archive offers a version newer than the
 * installed one and not newer than the candidate (the candidate came from a
 * point release that already carries the fix): the packages
 * unattended-upgrades, in its default security-only configuration, would
 * install.
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { errorMessage } from "../errors.ts";
import { type AptRelease, isSecurityArchive, parseRelease } from "./apt-release.ts";
import { aptCacheKey, readAptCache, writeAptCache } from "./apt-result-cache.ts";
import { type AptArchiveRef, parseAptSimulation } from "./apt-simulation.ts";
import { type OfferedVersion, pairIndexes, readOfferedVersions, releasePrefix } from "./apt-security-versions.ts";
import { type Checker, type CheckOptions, type CheckResult, failed, type LockReason, notApplicable, type PackageReason, type Reason } from "./checker.ts";
import { compareDebianVersions } from "./debian-version.ts";
import { isBroken, parseDpkgStatus } from "./dpkg-status.ts";
import { inRoot } from "./host-paths.ts";
import { describeHolders, waitForLockRelease } from "./lock-holders.ts";
import { detectPackageManager } from "./package-manager.ts";
import { packageSummary } from "./package-summary.ts";

/** The locks apt and dpkg take while they change the database or the lists. */
export const APT_LOCK_FILES = ["var/lib/dpkg/lock-frontend", "var/lib/dpkg/lock", "var/lib/apt/lists/lock"];

export const aptChecker: Checker = {
  name: "apt",
  source: "apt-get --simulate dist-upgrade; archives from /var/lib/apt/lists/*Release",
  async check(opts: CheckOptions): Promise<CheckResult> {
    const manager = await detectPackageManager(opts.paths);
    if (manager !== "apt") return notApplicable(manager ? `this host uses ${manager}` : "no dpkg database on this host");
    const aptGet = opts.which("apt-get");
    if (!aptGet) return failed("The dpkg database exists but apt-get is not installed");

    const locks = APT_LOCK_FILES.map((p) => inRoot(opts.paths, p));
    const holders = await waitForLockRelease(locks, opts.lockTimeoutMs, opts.paths.proc);
    if (holders.length) {
      const reasons: LockReason[] = holders.map((h) => ({ kind: "lock", ...h }));
      return failed(`The package database is locked: ${describeHolders(holders)}; gave up after ${opts.lockTimeoutMs / 1000} s`, reasons);
    }

    const listsDir = inRoot(opts.paths, "var/lib/apt/lists");
    // Nothing apt reads has changed since the last answer: give it again, without running apt.
    const key = opts.cacheDir ? await aptCacheKey(opts.paths, aptGet) : null;
    if (opts.cacheDir && key) {
      const hit = await readAptCache(opts.cacheDir, key);
      if (hit) {
        const note: Reason = {
          kind: "note",
          message: `from the cache of ${hit.checked_at}: the dpkg database, the package lists and apt's configuration are unchanged since`,
        };
        return withListsAge({ ...hit.result, reasons: [...hit.result.reasons, note] }, listsDir);
      }
    }
    const result = await simulate(opts, aptGet, listsDir);
    // Kept only if the inputs did not change while apt ran: the answer is then surely theirs.
    if (opts.cacheDir && key && (await aptCacheKey(opts.paths, aptGet)) === key) await writeAptCache(opts.cacheDir, key, result, new Date());
    return withListsAge(result, listsDir);
  },
};

/** Run apt's resolver and classify its answer; the lists' age is added by the caller. */
async function simulate(opts: CheckOptions, aptGet: string, listsDir: string): Promise<CheckResult> {
  const argv = [aptGet, "--simulate", "-o", "Debug::NoLocking=1", "-o", "APT::Get::Show-User-Simulation-Note=false"];
  if (opts.paths.root !== "/") {
    argv.push("-o", `Dir=${opts.paths.root}`, "-o", `Dir::State::status=${inRoot(opts.paths, "var/lib/dpkg/status")}`);
  }
  argv.push("dist-upgrade");
  const r = await opts.run(argv, { timeoutMs: opts.commandTimeoutMs, env: { ...process.env, LC_ALL: "C", LANG: "C", LANGUAGE: "" } });
  if (r.timedOut) return failed(`"apt-get --simulate dist-upgrade" did not finish within ${opts.commandTimeoutMs / 1000} s`);
  if (r.exitCode !== 0) {
    const msg =
      r.stderr
        .trim()
        .split("\n")
        .filter((l) => l.startsWith("E:"))
        .join(" ") ||
      r.stderr.trim().split("\n").pop() ||
      "";
    return failed(`"apt-get --simulate dist-upgrade" exited with status ${r.exitCode}${msg ? `: ${msg}` : ""}`);
  }

  const sim = parseAptSimulation(r.stdout);
  const releaseFiles = await readReleaseFiles(listsDir);
  const releases = [...releaseFiles.values()];
  // Without lists apt knows of no candidates, and "no updates" would be a false all clear.
  if (releases.length === 0) return failed(`apt has no package lists in "${listsDir}" (run apt-get update): cannot tell which updates exist`);
  const upgrades = sim.installs.filter((i) => i.installed !== undefined); // the others are new dependencies, not updates
  let offered: OfferedVersion[];
  try {
    const names = await readdir(listsDir);
    const securityIndexes = pairIndexes(names, releaseFiles).filter((x) => isSecurityArchive(x.release));
    const wanted = new Set(upgrades.map((i) => i.name.split(":")[0]!));
    offered = wanted.size ? await readOfferedVersions(listsDir, securityIndexes, wanted, opts.run, opts.commandTimeoutMs) : [];
  } catch (e) {
    return failed(`Cannot read the security archives' package lists: ${errorMessage(e)}`);
  }
  const packages: PackageReason[] = [];
  for (const i of upgrades) {
    const [name, foreignArch] = i.name.split(":");
    const arch = foreignArch ?? i.arch;
    const fix = securityFix(
      { name: name!, arch, installed: i.installed!, candidate: i.candidate },
      i.archives.some((a) => isSecurityArchive(resolveArchive(a, releases))),
      offered,
    );
    packages.push({
      kind: "package",
      name: name!,
      arch,
      installed: i.installed!,
      candidate: i.candidate,
      security: fix !== undefined,
      ...(fix !== undefined ? { security_version: fix } : {}),
      origins: i.archives.map((a) => a.text),
    });
  }
  packages.sort((a, b) => Number(b.security) - Number(a.security) || a.name.localeCompare(b.name) || (a.arch ?? "").localeCompare(b.arch ?? ""));
  const reasons: Reason[] = [...packages];
  if (sim.keptBack.length) reasons.push({ kind: "note", message: `kept back (held or blocked): ${sim.keptBack.join(", ")}` });
  const news = sim.installs.filter((i) => i.installed === undefined).map((i) => i.name);
  if (news.length) reasons.push({ kind: "note", message: `the upgrade would newly install: ${news.join(", ")}` });
  if (sim.removals.length) reasons.push({ kind: "note", message: `the upgrade would remove: ${sim.removals.map((x) => x.name).join(", ")}` });
  try {
    const broken = parseDpkgStatus(await readFile(inRoot(opts.paths, "var/lib/dpkg/status"), "utf8")).filter(isBroken);
    if (broken.length)
      reasons.push({
        kind: "note",
        message: `dpkg left these part-way (run "dpkg --configure -a"): ${broken.map((p) => `${p.name} (${p.state})`).join(", ")}`,
      });
  } catch (e) {
    reasons.push({ kind: "note", message: `cannot read the dpkg database: ${errorMessage(e)}` });
  }
  const nSecurity = packages.filter((p) => p.security).length;
  return {
    verdict: nSecurity ? "security_update_available" : packages.length ? "update_available" : "ok",
    summary: packageSummary(packages),
    reasons,
  };
}

/** Say so when the lists are old: a cached answer ages with them. */
async function withListsAge(result: CheckResult, listsDir: string): Promise<CheckResult> {
  if (result.verdict === "error") return result;
  const age = await listsAgeDays(listsDir);
  if (age === null || age <= STALE_LISTS_DAYS) return result;
  return {
    ...result,
    summary: `${result.summary} (lists ${Math.floor(age)} days old)`,
    reasons: [...result.reasons, { kind: "note", message: `the package lists were last updated ${Math.floor(age)} days ago: newer updates may exist` }],
  };
}

/** Lists older than this are called out: apt-daily refreshes them daily. */
const STALE_LISTS_DAYS = 7;

/** Days since the newest Release file was fetched, or null when there is none. */
export async function listsAgeDays(listsDir: string, now = Date.now()): Promise<number | null> {
  let newest = 0;
  for (const n of await readdir(listsDir).catch(() => [] as string[])) {
    if (!n.endsWith("_InRelease") && !n.endsWith("_Release")) continue;
    const st = await stat(join(listsDir, n)).catch(() => null);
    if (st) newest = Math.max(newest, st.mtimeMs);
  }
  return newest ? (now - newest) / 86_400_000 : null;
}

/**
 * The archive's Release data. apt names an archive by label and suite; the
 * Release file with both adds its origin and codename.
 */
export function resolveArchive(ref: AptArchiveRef, releases: readonly AptRelease[]): AptRelease {
  const match = releases.find(
    (r) => r.suite === ref.suite && (ref.label === undefined || r.label === ref.label) && (ref.version === undefined || r.version === ref.version),
  );
  return match ?? { label: ref.label, suite: ref.suite, version: ref.version };
}

/**
 * The version that fixes a pending update's security issue, or undefined
 * when it has none: the candidate when it comes from a security archive,
 * else the newest version a security archive offers for the package's
 * architecture that is newer than the installed one and not newer than the
 * candidate (unattended-upgrades installs that one instead). Pure.
 */
export function securityFix(
  pkg: { name: string; arch: string; installed: string; candidate: string },
  candidateIsSecurity: boolean,
  offered: readonly OfferedVersion[],
): string | undefined {
  if (candidateIsSecurity) return pkg.candidate;
  let best: string | undefined;
  for (const o of offered) {
    if (o.name !== pkg.name || (o.arch !== pkg.arch && o.arch !== "all" && pkg.arch !== "all")) continue;
    if (compareDebianVersions(o.version, pkg.installed) <= 0 || compareDebianVersions(o.version, pkg.candidate) > 0) continue;
    if (best === undefined || compareDebianVersions(o.version, best) > 0) best = o.version;
  }
  return best;
}

/** The Release headers of every list apt has downloaded. */
export async function readReleases(listsDir: string): Promise<AptRelease[]> {
  return [...(await readReleaseFiles(listsDir)).values()];
}

/** The Release headers of every list apt has downloaded, by their file name's prefix (see apt-security-versions.ts). */
export async function readReleaseFiles(listsDir: string): Promise<Map<string, AptRelease>> {
  let names: string[];
  try {
    names = await readdir(listsDir);
  } catch {
    return new Map();
  }
  const out = new Map<string, AptRelease>();
  for (const n of names.sort()) {
    const prefix = releasePrefix(n);
    if (prefix === null) continue;
    try {
      // The header sits at the top; the checksum lists below it can be large.
      const file = Bun.file(join(listsDir, n));
      // InRelease sorts before Release: a repository that has both keeps the signed one.
      if (!out.has(prefix)) out.set(prefix, parseRelease(await file.slice(0, 16384).text()));
    } catch {
      // unreadable: its packages fall back to apt's label and suite
    }
  }
  return out;
}
