/**
 * The apt check: pending updates on Debian and Ubuntu, from apt's own
 * resolver (`apt-get --simulate dist-upgrade`, which honours pinning and
 * never changes the package database or touches the network), classified as
 * security updates by the archive each candidate comes from.
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { errorMessage } from "../errors.ts";
import { type AptRelease, isSecurityArchive, parseRelease } from "./apt-release.ts";
import { type AptArchiveRef, parseAptSimulation } from "./apt-simulation.ts";
import { type Checker, type CheckOptions, type CheckResult, failed, type LockReason, notApplicable, type PackageReason, type Reason } from "./checker.ts";
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
    const listsDir = inRoot(opts.paths, "var/lib/apt/lists");
    const releases = await readReleases(listsDir);
    // Without lists apt knows of no candidates, and "no updates" would be a false all clear.
    if (releases.length === 0) return failed(`apt has no package lists in "${listsDir}" (run apt-get update): cannot tell which updates exist`);
    const packages: PackageReason[] = [];
    for (const i of sim.installs) {
      if (i.installed === undefined) continue; // pulled in as a new dependency: not an update of anything installed
      const [name, foreignArch] = i.name.split(":");
      packages.push({
        kind: "package",
        name: name!,
        arch: foreignArch ?? i.arch,
        installed: i.installed,
        candidate: i.candidate,
        security: i.archives.some((a) => isSecurityArchive(resolveArchive(a, releases))),
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
    const age = await listsAgeDays(listsDir);
    if (age !== null && age > STALE_LISTS_DAYS)
      reasons.push({ kind: "note", message: `the package lists were last updated ${Math.floor(age)} days ago: newer updates may exist` });
    const nSecurity = packages.filter((p) => p.security).length;
    return {
      verdict: nSecurity ? "security_update_available" : packages.length ? "update_available" : "ok",
      summary: packageSummary(packages) + (age !== null && age > STALE_LISTS_DAYS ? ` (lists ${Math.floor(age)} days old)` : ""),
      reasons,
    };
  },
};

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

/** The Release headers of every list apt has downloaded. */
export async function readReleases(listsDir: string): Promise<AptRelease[]> {
  let names: string[];
  try {
    names = await readdir(listsDir);
  } catch {
    return [];
  }
  const out: AptRelease[] = [];
  for (const n of names) {
    if (!n.endsWith("_InRelease") && !n.endsWith("_Release")) continue;
    try {
      // The header sits at the top; the checksum lists below it can be large.
      const file = Bun.file(join(listsDir, n));
      out.push(parseRelease(await file.slice(0, 16384).text()));
    } catch {
      // unreadable: its packages fall back to apt's label and suite
    }
  }
  return out;
}
