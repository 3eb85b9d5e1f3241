/**
 * The apk check: pending updates on Alpine from `apk version -l '<'`, run
 * against the cached indexes without the network. Alpine's package indexes
 * do not mark security fixes, so every update counts as a plain update.
 */
import { type Checker, type CheckOptions, type CheckResult, failed, type LockReason, notApplicable, type PackageReason } from "./checker.ts";
import { inRoot } from "./host-paths.ts";
import { describeHolders, waitForLockRelease } from "./lock-holders.ts";
import { detectPackageManager } from "./package-manager.ts";
import { packageSummary } from "./package-summary.ts";

export interface ApkUpdate {
  name: string;
  installed: string;
  candidate: string;
}

/** Split "name-1.2.3-r4" into the name and the version ("1.2.3-r4"). */
export function splitApkPackage(s: string): { name: string; version: string } | null {
  const m = /^(.+?)-(\d[^-]*-r\d+)$/.exec(s);
  return m ? { name: m[1]!, version: m[2]! } : null;
}

/** Parse `apk version -l '<'`: "name-installed  <  available" rows under a header. */
export function parseApkVersion(text: string): ApkUpdate[] {
  const out: ApkUpdate[] = [];
  for (const line of text.split("\n")) {
    const m = /^(\S+)\s+<\s+(\S+)/.exec(line.trim());
    if (!m) continue;
    const p = splitApkPackage(m[1]!);
    if (p) out.push({ name: p.name, installed: p.version, candidate: m[2]! });
  }
  return out;
}

export const apkChecker: Checker = {
  name: "apk",
  source: "apk --no-network version -l '<'",
  async check(opts: CheckOptions): Promise<CheckResult> {
    const manager = await detectPackageManager(opts.paths);
    if (manager !== "apk") return notApplicable(manager ? `this host uses ${manager}` : "no apk database on this host");
    const apk = opts.which("apk");
    if (!apk) return failed("The apk database exists but apk is not installed");
    const holders = await waitForLockRelease([inRoot(opts.paths, "lib/apk/db/lock")], opts.lockTimeoutMs, opts.paths.proc);
    if (holders.length) {
      const reasons: LockReason[] = holders.map((h) => ({ kind: "lock", ...h }));
      return failed(`The apk database is locked: ${describeHolders(holders)}; gave up after ${opts.lockTimeoutMs / 1000} s`, reasons);
    }
    const argv = [apk, "--no-network", ...(opts.paths.root !== "/" ? ["--root", opts.paths.root] : []), "version", "-l", "<"];
    const r = await opts.run(argv, { timeoutMs: opts.commandTimeoutMs, env: { ...process.env, LC_ALL: "C" } });
    if (r.timedOut) return failed(`"apk version" did not finish within ${opts.commandTimeoutMs / 1000} s`);
    if (r.exitCode !== 0) return failed(`"apk version" exited with status ${r.exitCode}: ${r.stderr.trim().split("\n").pop() ?? ""}`);
    const packages: PackageReason[] = parseApkVersion(r.stdout).map((u) => ({ kind: "package", ...u, security: false, origins: [] }));
    return { verdict: packages.length ? "update_available" : "ok", summary: packageSummary(packages), reasons: packages };
  },
};
