/**
 * The apt check on this Debian host, for real: against its sources and dpkg
 * database; with a real security update the test makes (it installs the
 * previous version of a small package that bookworm-security has newer, then
 * removes it again); and with a held dpkg lock on a fake root.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, which } from "../src/platform/linux/exec.ts";
import { APT_LOCK_FILES, aptChecker, readReleases } from "../src/status/apt.ts";
import { isSecurityArchive, parseRelease } from "../src/status/apt-release.ts";
import type { CheckOptions, PackageReason } from "../src/status/checker.ts";
import { StatusReportSchema } from "../src/status/report-schema.ts";
import { compareDebianVersions } from "../src/status/debian-version.ts";
import { parseDeb822 } from "../src/status/deb822.ts";
import { isOnDisk, parseDpkgStatus } from "../src/status/dpkg-status.ts";
import { hostPaths } from "../src/status/host-paths.ts";
import { waitForLockRelease } from "../src/status/lock-holders.ts";
import { autopod, isRoot, rootTest } from "./_support.ts";

const LISTS = "/var/lib/apt/lists";
const isDebian = which("apt-get") !== null && which("dpkg") !== null;
const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive", LC_ALL: "C" };

function hostOptions(lockTimeoutMs = 10_000): CheckOptions {
  return { paths: hostPaths(), run, which: (n) => which(n), lockTimeoutMs, commandTimeoutMs: 120_000 };
}

/** Wait for whoever else runs apt on this machine (another helper installing packages) to finish. */
async function waitForApt(): Promise<void> {
  const held = await waitForLockRelease(
    APT_LOCK_FILES.map((p) => join("/", p)),
    600_000,
  );
  if (held.length) throw new Error(`apt stayed busy for 10 minutes: ${JSON.stringify(held)}`);
}

async function aptGet(args: string[]): Promise<void> {
  const r = await run(["apt-get", "-o", "DPkg::Lock::Timeout=600", ...args], { env, timeoutMs: 900_000 });
  if (r.exitCode !== 0) throw new Error(`apt-get ${args.join(" ")} failed (${r.exitCode}): ${r.stderr.slice(-2000)}`);
}

function packagesOf(checkReasons: readonly { kind: string }[]): PackageReason[] {
  return checkReasons.filter((r): r is PackageReason => r.kind === "package");
}

const skipReason = !isDebian ? "this machine has no apt-get and dpkg" : null;
const debianTest = (name: string, fn: () => Promise<void>, timeoutMs?: number) => {
  if (skipReason) {
    console.warn(`SKIP "${name}": ${skipReason}`);
    test.skip(name, fn);
  } else test(name, fn, timeoutMs);
};

describe("the apt check on this host", () => {
  debianTest(
    "agrees with `apt list --upgradable`: the same packages, versions, and security ones from *-security (or with an older fix there)",
    async () => {
      // Another helper may take apt's lock between our wait and our check: wait again and retry.
      let r = await aptChecker.check(hostOptions());
      for (let i = 0; i < 3 && r.reasons.some((x) => x.kind === "lock"); i++) {
        await waitForApt();
        r = await aptChecker.check(hostOptions());
      }
      expect(r.verdict).not.toBe("error");
      const listed = await run(["apt", "list", "--upgradable"], { env, timeoutMs: 120_000 });
      // "name/suite1,suite2 candidate arch [upgradable from: installed]"
      const want = listed.stdout
        .split("\n")
        .map((l) => /^([^/\s]+)\/(\S+) (\S+) (\S+) \[upgradable from: ([^\]]+)\]/.exec(l))
        .filter((m) => m !== null)
        .map((m) => ({ name: m![1]!, arch: m![4]!, candidate: m![3]!, installed: m![5]!, security: m![2]!.split(",").some((s) => s.endsWith("-security")) }))
        .sort((a, b) => a.name.localeCompare(b.name) || a.arch.localeCompare(b.arch));
      const pkgs = packagesOf(r.reasons);
      // A candidate from a point release with an older fix in the security archive is a security update too
      // (unattended-upgrades installs that fix): apt list marks only the candidate's own suites. Each such
      // fix must be a version `apt-cache madison` lists from a -security suite, newer than the installed one.
      for (const p of pkgs.filter((x) => x.security && x.security_version !== x.candidate)) {
        const madison = (await run(["apt-cache", "madison", p.name], { env, timeoutMs: 120_000 })).stdout;
        const fix = madison.split("\n").find((l) => l.split("|")[1]?.trim() === p.security_version);
        expect(fix).toMatch(/-security\//);
        expect(compareDebianVersions(p.security_version!, p.installed)).toBeGreaterThan(0);
        const w = want.find((x) => x.name === p.name && x.arch === p.arch);
        if (w) w.security = true;
      }
      const got = pkgs
        .map((p) => ({ name: p.name, arch: p.arch!, candidate: p.candidate, installed: p.installed, security: p.security }))
        .sort((a, b) => a.name.localeCompare(b.name) || a.arch.localeCompare(b.arch));
      expect(got).toEqual(want);
      expect(r.verdict).toBe(want.some((p) => p.security) ? "security_update_available" : want.length ? "update_available" : "ok");
    },
    180_000,
  );

  debianTest(
    "a held dpkg lock gives an error naming the holder, within the lock timeout",
    async () => {
      const root = mkdtempSync(join(tmpdir(), "autopod-lock-"));
      mkdirSync(join(root, "etc"), { recursive: true });
      mkdirSync(join(root, "var/lib/dpkg"), { recursive: true });
      writeFileSync(join(root, "etc/os-release"), "ID=debian\n");
      writeFileSync(join(root, "var/lib/dpkg/status"), "");
      const lock = join(root, "var/lib/dpkg/lock-frontend");
      writeFileSync(lock, "");
      // util-linux flock holds the lock the way a running apt would (an exclusive lock on the file).
      const holder = Bun.spawn(["flock", "--exclusive", lock, "sleep", "60"], { stdout: "ignore", stderr: "ignore" });
      try {
        while ((await waitForLockRelease([lock], 0)).length === 0) await Bun.sleep(20);
        const opts = { ...hostOptions(1500), paths: hostPaths({ root }) };
        const t = performance.now();
        const r = await aptChecker.check(opts);
        const ms = performance.now() - t;
        expect(r.verdict).toBe("error");
        expect(r.error).toContain(`"${lock}" is held by pid ${holder.pid} (flock)`);
        expect(r.reasons).toEqual([{ kind: "lock", path: lock, pid: holder.pid, command: "flock" }]);
        expect(ms).toBeGreaterThanOrEqual(1400);
        expect(ms).toBeLessThan(10_000);
      } finally {
        holder.kill();
        await holder.exited;
        rmSync(root, { recursive: true, force: true });
      }
    },
    20_000,
  );
});

test("an open-file-description lock, which /proc/locks shows without a pid, is traced to its holder", async () => {
  const python = which("python3");
  if (!python) {
    console.warn('SKIP "OFD lock holder": python3 is not installed');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), "autopod-ofd-"));
  const lock = join(dir, "lock");
  writeFileSync(lock, "");
  // F_OFD_SETLK is 37 on Linux; struct flock: short type, short whence, off_t start, off_t len, pid_t pid.
  const code = `import fcntl,os,struct,sys,time\nfd=os.open(sys.argv[1],os.O_RDWR)\nfcntl.fcntl(fd,37,struct.pack('hhqqi',fcntl.F_WRLCK,0,0,0,0))\nprint('locked',flush=True)\ntime.sleep(60)`;
  const holder = Bun.spawn([python, "-c", code, lock], { stdout: "pipe", stderr: "ignore" });
  try {
    const reader = holder.stdout.getReader();
    await reader.read(); // "locked"
    expect(await Bun.file("/proc/locks").text()).toMatch(/OFDLCK\s+ADVISORY\s+WRITE -1 /);
    expect(await waitForLockRelease([lock], 0)).toEqual([{ path: lock, pid: holder.pid, command: "python3" }]);
  } finally {
    holder.kill();
    await holder.exited;
    rmSync(dir, { recursive: true, force: true });
  }
}, 20_000);

// ---- a real security update, made by the test ----

interface Candidate {
  name: string;
  oldVersion: string;
  securityVersion: string;
}

/** Packages of each downloaded list, with whether its archive is a security one. */
async function readLists(): Promise<Array<{ security: boolean; stanzas: Record<string, string>[] }>> {
  const out = [];
  for (const n of readdirSync(LISTS).filter((x) => /_Packages(\.\w+)?$/.test(x))) {
    const prefix = n.slice(0, n.indexOf("_dists_") + "_dists_".length) + n.slice(n.indexOf("_dists_") + 7).split("_")[0];
    const release = ["_InRelease", "_Release"].map((s) => join(LISTS, prefix + s)).find((p) => Bun.file(p).size > 0);
    if (!release) continue;
    const security = isSecurityArchive(parseRelease(await Bun.file(release).text()));
    const text = (await run(["/usr/lib/apt/apt-helper", "cat-file", join(LISTS, n)], { timeoutMs: 60_000 })).stdout;
    out.push({ security, stanzas: parseDeb822(text) });
  }
  return out;
}

/**
 * A small package, not installed, that the security archive has newer than
 * the main archive, and whose old version installs alone (no other package
 * added, upgraded or removed).
 */
async function findCandidate(): Promise<Candidate | null> {
  const arch = (await run(["dpkg", "--print-architecture"])).stdout.trim();
  const installed = new Set(
    parseDpkgStatus(await Bun.file("/var/lib/dpkg/status").text())
      .filter(isOnDisk)
      .map((p) => p.name),
  );
  const lists = await readLists();
  const main = new Map<string, Record<string, string>>();
  for (const l of lists.filter((x) => !x.security))
    for (const s of l.stanzas) if (s.Package && (s.Architecture === arch || s.Architecture === "all")) main.set(s.Package, s);
  const found: Array<Candidate & { size: number }> = [];
  for (const l of lists.filter((x) => x.security)) {
    for (const s of l.stanzas) {
      const old = s.Package ? main.get(s.Package) : undefined;
      if (!old || installed.has(s.Package!) || (s.Architecture !== arch && s.Architecture !== "all")) continue;
      if (compareDebianVersions(s.Version!, old.Version!) <= 0) continue;
      const deps = [old.Depends, old["Pre-Depends"]].filter(Boolean).join(", ");
      if (deps.includes("(=")) continue;
      const depNames = deps
        .split(",")
        .map(
          (d) =>
            d
              .split("|")[0]!
              .trim()
              .split(/[\s(:]/)[0]!,
        )
        .filter(Boolean);
      if (!depNames.every((d) => installed.has(d))) continue;
      found.push({ name: s.Package!, oldVersion: old.Version!, securityVersion: s.Version!, size: Number(old.Size ?? 1e12) });
    }
  }
  found.sort((a, b) => a.size - b.size);
  for (const c of found.slice(0, 20)) {
    const sim = await run(["apt-get", "-s", "-o", "Debug::NoLocking=1", "install", `${c.name}=${c.oldVersion}`], { env, timeoutMs: 120_000 });
    if (sim.exitCode === 0 && sim.stdout.includes("0 upgraded, 1 newly installed, 0 to remove")) return c;
  }
  return null;
}

describe("a real security update made by the test", () => {
  let candidate: Candidate | null = null;
  let before: PackageReason[] = [];
  let installedByUs = false;

  beforeAll(async () => {
    if (!isRoot || !isDebian) return;
    await waitForApt();
    if (!(await readReleases(LISTS)).some(isSecurityArchive)) await aptGet(["update"]); // lists without the security archive
    candidate = await findCandidate();
    if (!candidate) return;
    before = packagesOf((await aptChecker.check(hostOptions(60_000))).reasons);
    await waitForApt();
    installedByUs = true;
    await aptGet(["install", "-y", "--no-install-recommends", "--allow-downgrades", `${candidate.name}=${candidate.oldVersion}`]);
  }, 900_000);

  afterAll(async () => {
    if (!candidate || !installedByUs) return;
    // Back to the original state: the package was not installed.
    await aptGet(["purge", "-y", candidate.name]);
  }, 900_000);

  rootTest(
    "status reports exactly that package as a security update, with its installed and candidate versions",
    async () => {
      if (!isDebian) throw new Error("this machine has no apt-get and dpkg");
      if (!candidate) throw new Error("found no package that bookworm-security has newer than bookworm and that installs alone");
      console.log(`installed ${candidate.name} ${candidate.oldVersion}; the security archive has ${candidate.securityVersion}`);
      const r = await aptChecker.check(hostOptions(60_000));
      expect(r.verdict).toBe("security_update_available");
      const after = packagesOf(r.reasons);
      const reason = after.find((p) => p.name === candidate!.name);
      expect(reason).toMatchObject({
        kind: "package",
        name: candidate.name,
        installed: candidate.oldVersion,
        candidate: candidate.securityVersion,
        security: true,
      });
      // The only change between before and after is that one package.
      const key = (p: PackageReason) => `${p.name}:${p.arch} ${p.installed} -> ${p.candidate} ${p.security}`;
      const added = after.map(key).filter((k) => !new Set(before.map(key)).has(k));
      const removed = before.map(key).filter((k) => !new Set(after.map(key)).has(k));
      expect(added).toEqual([key(reason!)]);
      expect(removed).toEqual([]);

      // And the command a user runs says so too.
      const cli = await autopod(["status", "--json"], { timeoutMs: 180_000 });
      const report = StatusReportSchema.parse(JSON.parse(cli.stdout));
      const apt = report.checks.find((c) => c.check === "apt")!;
      expect(packagesOf(apt.reasons).find((p) => p.name === candidate!.name)).toMatchObject({
        security: true,
        installed: candidate.oldVersion,
        candidate: candidate.securityVersion,
      });
      expect(report.updates.security).toBeGreaterThanOrEqual(1);
      expect([11, 12]).toContain(cli.exitCode); // security updates, or a reboot on top
    },
    300_000,
  );
});
