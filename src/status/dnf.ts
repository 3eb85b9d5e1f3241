/**
 * The dnf check: pending updates on Fedora and RHEL from `dnf check-update`,
 * security ones from `dnf updateinfo list --updates`, installed versions from
 * `rpm -qa`. It runs from dnf's metadata cache (-C), which dnf-makecache.timer
 * keeps fresh, so it never waits on the network; yum stands in where dnf is absent.
 */
import { type Checker, type CheckOptions, type CheckResult, failed, type LockReason, notApplicable, type PackageReason } from "./checker.ts";
import { inRoot } from "./host-paths.ts";
import { describeHolders, waitForLockRelease } from "./lock-holders.ts";
import { detectPackageManager } from "./package-manager.ts";
import { packageSummary } from "./package-summary.ts";
import { compareEvr } from "./rpm-version.ts";

export interface DnfUpdate {
  name: string;
  arch: string;
  /** [epoch:]version-release */
  evr: string;
  repo: string;
}

const RPM_ARCHES = new Set(["x86_64", "noarch", "aarch64", "i686", "i386", "ppc64le", "ppc64", "s390x", "armv7hl", "riscv64", "src"]);

/** Split "name.arch" at the last dot, when what follows is an architecture. */
function splitNameArch(s: string): { name: string; arch: string } | null {
  const dot = s.lastIndexOf(".");
  if (dot <= 0 || !RPM_ARCHES.has(s.slice(dot + 1))) return null;
  return { name: s.slice(0, dot), arch: s.slice(dot + 1) };
}

/**
 * Parse `dnf check-update` (dnf 4 and 5, yum): "name.arch  evr  repo" rows,
 * where a long name wraps the rest onto the next line. Obsoleted packages
 * below "Obsoleting Packages" are not updates of their own.
 */
export function parseDnfCheckUpdate(text: string): DnfUpdate[] {
  const out: DnfUpdate[] = [];
  let pending: string[] = [];
  for (const line of text.split("\n")) {
    const t = line.trim();
    if (/^(Obsoleting|Security:|Last metadata|Updating Subscription)/i.test(t)) {
      if (/^Obsoleting/i.test(t)) break;
      continue;
    }
    if (t === "") continue;
    pending.push(...t.split(/\s+/));
    while (pending.length >= 3) {
      const na = splitNameArch(pending[0]!);
      if (!na) {
        pending.shift(); // not a row: a message dnf printed
        continue;
      }
      out.push({ ...na, evr: pending[1]!, repo: pending[2]! });
      pending = pending.slice(3);
    }
  }
  return out;
}

export interface DnfAdvisory {
  id: string;
  security: boolean;
  name: string;
  arch: string;
  evr: string;
}

/** Split a NEVRA ("openssl-libs-1:3.1.1-4.fc39.x86_64") into name, evr and arch. */
export function parseNevra(s: string): { name: string; evr: string; arch: string } | null {
  const m = /^(.+)-((?:\d+:)?[^-:]+-[^-]+)\.([^.]+)$/.exec(s);
  if (!m || !RPM_ARCHES.has(m[3]!)) return null;
  return { name: m[1]!, evr: m[2]!, arch: m[3]! };
}

/**
 * Parse `dnf updateinfo list` in dnf 4 and yum ("ID  Severity/Sec.  NEVRA")
 * and dnf 5 ("ID  security  Severity  NEVRA  Issued").
 */
export function parseDnfUpdateinfo(text: string): DnfAdvisory[] {
  const out: DnfAdvisory[] = [];
  for (const line of text.split("\n")) {
    const tokens = line.trim().split(/\s+/);
    if (tokens.length < 3) continue;
    const nevra = tokens
      .slice(2)
      .map(parseNevra)
      .find((x) => x !== null);
    if (!nevra) continue;
    const type = tokens[1]!;
    out.push({ id: tokens[0]!, security: type === "security" || type.endsWith("/Sec.") || type === "Sec.", ...nevra });
  }
  return out;
}

/** Parse `rpm -qa --qf '%{NAME}.%{ARCH}\t%{EPOCH}:%{VERSION}-%{RELEASE}\n'`: the newest installed EVR of each name.arch. */
export function parseRpmQa(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const [na, evrRaw] = line.split("\t");
    if (!na || !evrRaw) continue;
    const evr = evrRaw.startsWith("(none):") ? evrRaw.slice("(none):".length) : evrRaw;
    const prev = out.get(na);
    if (prev === undefined || compareEvr(evr, prev) > 0) out.set(na, evr);
  }
  return out;
}

const RPM_LOCK_FILES = ["var/lib/rpm/.rpm.lock", "usr/lib/sysimage/rpm/.rpm.lock"];

export const dnfChecker: Checker = {
  name: "dnf",
  source: "dnf -C check-update, dnf -C updateinfo list --updates, rpm -qa",
  async check(opts: CheckOptions): Promise<CheckResult> {
    const manager = await detectPackageManager(opts.paths);
    if (manager !== "dnf") return notApplicable(manager ? `this host uses ${manager}` : "no rpm database on this host");
    const dnf = opts.which("dnf") ?? opts.which("yum");
    const rpm = opts.which("rpm");
    if (!dnf || !rpm) return failed("The rpm database exists but dnf, yum or rpm is not installed");
    const tool = dnf.split("/").pop()!;

    const holders = await waitForLockRelease(
      RPM_LOCK_FILES.map((p) => inRoot(opts.paths, p)),
      opts.lockTimeoutMs,
      opts.paths.proc,
    );
    if (holders.length) {
      const reasons: LockReason[] = holders.map((h) => ({ kind: "lock", ...h }));
      return failed(`The rpm database is locked: ${describeHolders(holders)}; gave up after ${opts.lockTimeoutMs / 1000} s`, reasons);
    }
    const base = [dnf, "-q", "-C", ...(opts.paths.root !== "/" ? ["--installroot", opts.paths.root] : [])];
    const runOpts = { timeoutMs: opts.commandTimeoutMs, env: { ...process.env, LC_ALL: "C", LANG: "C" } };
    const [cu, ui, qa] = await Promise.all([
      opts.run([...base, "check-update"], runOpts),
      opts.run([...base, "updateinfo", "list", "--updates"], runOpts),
      opts.run(
        [rpm, ...(opts.paths.root !== "/" ? ["--root", opts.paths.root] : []), "-qa", "--qf", "%{NAME}.%{ARCH}\t%{EPOCH}:%{VERSION}-%{RELEASE}\n"],
        runOpts,
      ),
    ]);
    for (const [what, r, okCodes] of [
      [`${tool} check-update`, cu, [0, 100]],
      [`${tool} updateinfo list`, ui, [0]],
      ["rpm -qa", qa, [0]],
    ] as const) {
      if (r.timedOut) return failed(`"${what}" did not finish within ${opts.commandTimeoutMs / 1000} s`);
      if (!(okCodes as readonly number[]).includes(r.exitCode)) {
        return failed(`"${what}" exited with status ${r.exitCode}: ${r.stderr.trim().split("\n").pop() ?? ""}`);
      }
    }
    const installed = parseRpmQa(qa.stdout);
    const securityNames = new Set(
      parseDnfUpdateinfo(ui.stdout)
        .filter((a) => a.security)
        .map((a) => `${a.name}.${a.arch}`),
    );
    const packages: PackageReason[] = parseDnfCheckUpdate(cu.stdout).map((u) => ({
      kind: "package",
      name: u.name,
      arch: u.arch,
      installed: installed.get(`${u.name}.${u.arch}`) ?? "",
      candidate: u.evr,
      security: securityNames.has(`${u.name}.${u.arch}`),
      origins: [u.repo],
    }));
    packages.sort((a, b) => Number(b.security) - Number(a.security) || a.name.localeCompare(b.name));
    const nSecurity = packages.filter((p) => p.security).length;
    return {
      verdict: nSecurity ? "security_update_available" : packages.length ? "update_available" : "ok",
      summary: packageSummary(packages),
      reasons: packages,
      source: `${tool} -C check-update, ${tool} -C updateinfo list --updates, rpm -qa`,
    };
  },
};
