/**
 * Security fixes in an archive older than the candidate, with the real apt:
 * the test makes two local repositories (a point release "bookworm", label
 * Debian, and "bookworm-security", label Debian-Security), points a test
 * root's sources at them, runs the real `apt-get update` there, then the apt
 * check and `autopod status --json` on that root.
 *
 * The case from a real host: openssh-client installed at deb12u6, the point
 * release has deb12u10 (the candidate), the security archive deb12u9.
 * unattended-upgrades installs deb12u9 as a security update; so must the
 * check call it one.
 */
import { afterAll, beforeAll, describe, expect } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, which } from "../src/platform/linux/exec.ts";
import { aptChecker } from "../src/status/apt.ts";
import type { CheckOptions, PackageReason } from "../src/status/checker.ts";
import { hostPaths } from "../src/status/host-paths.ts";
import { StatusReportSchema } from "../src/status/report-schema.ts";
import { autopod, rootTest } from "./_support.ts";

const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive", LC_ALL: "C" };
let dir = "";
let root = "";
let arch = "amd64";

interface Pkg {
  name: string;
  version: string;
  arch?: string;
}

/** A dpkg status stanza of an installed package. */
function installed(p: Pkg): string {
  return [
    `Package: ${p.name}`,
    "Status: install ok installed",
    "Priority: optional",
    "Section: misc",
    "Installed-Size: 1",
    "Maintainer: autopod tests <root@localhost>",
    `Architecture: ${p.arch ?? arch}`,
    `Version: ${p.version}`,
    "Description: a package of the status test",
    "",
  ].join("\n");
}

/** A Packages stanza (the .deb itself is never fetched: apt only simulates). */
function offered(p: Pkg): string {
  const file = `pool/main/${p.name}_${p.version.replace(/^\d+:/, "")}_${p.arch ?? arch}.deb`;
  return [
    `Package: ${p.name}`,
    `Version: ${p.version}`,
    `Architecture: ${p.arch ?? arch}`,
    "Maintainer: autopod tests <root@localhost>",
    "Installed-Size: 1",
    `Filename: ${file}`,
    "Size: 1000",
    `SHA256: ${"0".repeat(64)}`,
    "Description: a package of the status test",
    "",
  ].join("\n");
}

function sha256(text: string): string {
  return new Bun.CryptoHasher("sha256").update(text).digest("hex");
}

/** A repository in the Debian layout with one suite, gzip-compressed as mirrors serve it, and its (unsigned) Release file. */
function repository(base: string, suite: string, release: Record<string, string>, pkgs: Pkg[]): void {
  const packages = pkgs.map(offered).join("\n");
  const gz = Bun.gzipSync(new TextEncoder().encode(packages));
  const idx = join(base, "dists", suite, "main", `binary-${arch}`);
  mkdirSync(idx, { recursive: true });
  writeFileSync(join(idx, "Packages"), packages);
  writeFileSync(join(idx, "Packages.gz"), gz);
  const gzHash = new Bun.CryptoHasher("sha256").update(gz).digest("hex");
  const fields = { ...release, Date: new Date().toUTCString(), Architectures: arch, Components: "main" };
  const text = [
    ...Object.entries(fields).map(([k, v]) => `${k}: ${v}`),
    "SHA256:",
    ` ${sha256(packages)} ${Buffer.byteLength(packages)} main/binary-${arch}/Packages`,
    ` ${gzHash} ${gz.length} main/binary-${arch}/Packages.gz`,
    "",
  ].join("\n");
  writeFileSync(join(base, "dists", suite, "Release"), text);
}

const OPENSSH = { installed: "1:9.2p1-2+deb12u6", pointRelease: "1:9.2p1-2+deb12u10", security: "1:9.2p1-2+deb12u9" };

beforeAll(async () => {
  if (process.getuid?.() !== 0 || !which("apt-get")) return;
  arch = (await run(["dpkg", "--print-architecture"])).stdout.trim() || "amd64";
  dir = mkdtempSync(join(tmpdir(), "autopod-apt-security-"));
  root = join(dir, "root");
  // The point release: newer openssh-client than the security archive, a plain bash update.
  repository(join(dir, "debian"), "bookworm", { Origin: "Debian", Label: "Debian", Suite: "oldstable", Codename: "bookworm", Version: "12.15" }, [
    { name: "openssh-client", version: OPENSSH.pointRelease },
    { name: "bash", version: "5.2.15-2+b8" },
    { name: "libssl3", version: "3.0.15-1~deb12u1" },
    { name: "tzdata", version: "2025b-0+deb12u2", arch: "all" },
  ]);
  // The security archive: an older fix for openssh-client, libssl3's candidate, bash at the installed version.
  repository(
    join(dir, "debian-security"),
    "bookworm-security",
    { Origin: "Debian", Label: "Debian-Security", Suite: "oldstable-security", Codename: "bookworm-security", Version: "12" },
    [
      { name: "openssh-client", version: OPENSSH.security },
      { name: "openssh-client", version: "1:9.2p1-2+deb12u5" },
      { name: "libssl3", version: "3.0.17-1~deb12u2" },
      { name: "bash", version: "5.2.15-2+b7" },
    ],
  );
  for (const d of [
    "etc/apt/apt.conf.d",
    "etc/apt/preferences.d",
    "etc/apt/sources.list.d",
    "var/lib/dpkg",
    "var/lib/apt/lists/partial",
    "var/cache/apt/archives/partial",
  ])
    mkdirSync(join(root, d), { recursive: true });
  writeFileSync(join(root, "etc/os-release"), "ID=debian\nVERSION_CODENAME=bookworm\n");
  writeFileSync(
    join(root, "etc/apt/sources.list"),
    `deb [trusted=yes] file:${join(dir, "debian")} bookworm main\ndeb [trusted=yes] file:${join(dir, "debian-security")} bookworm-security main\n`,
  );
  writeFileSync(
    join(root, "var/lib/dpkg/status"),
    [
      { name: "openssh-client", version: OPENSSH.installed },
      { name: "bash", version: "5.2.15-2+b7" },
      { name: "libssl3", version: "3.0.11-1~deb12u2" },
      { name: "tzdata", version: "2024a-0+deb12u1", arch: "all" },
    ]
      .map(installed)
      .join("\n"),
  );
  const update = await run(
    [
      "apt-get",
      "-o",
      `Dir=${root}`,
      "-o",
      `Dir::State::status=${join(root, "var/lib/dpkg/status")}`,
      "-o",
      "Debug::NoLocking=1",
      "-o",
      "APT::Sandbox::User=root",
      "update",
    ],
    { env, timeoutMs: 120_000 },
  );
  if (update.exitCode !== 0) throw new Error(`apt-get update in the test root failed (${update.exitCode}): ${update.stderr}${update.stdout}`);
}, 180_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function options(): CheckOptions {
  return { paths: hostPaths({ root }), run, which: (n) => which(n), lockTimeoutMs: 5_000, commandTimeoutMs: 120_000 };
}

const packagesOf = (reasons: readonly { kind: string }[]) => reasons.filter((r): r is PackageReason => r.kind === "package");

rootTest(
  "a security fix older than the candidate is a security update, with the fixing version beside the candidate",
  async () => {
    // apt itself fetched the lists: both archives are there.
    console.log(`apt-get update made: ${readdirSync(join(root, "var/lib/apt/lists")).join(", ")}`);
    expect(readdirSync(join(root, "var/lib/apt/lists")).filter((n) => n.includes("_Packages"))).toHaveLength(2);
    const r = await aptChecker.check(options());
    const pkgs = packagesOf(r.reasons);
    expect(pkgs.find((p) => p.name === "openssh-client")).toEqual({
      kind: "package",
      name: "openssh-client",
      arch,
      installed: OPENSSH.installed,
      candidate: OPENSSH.pointRelease,
      security: true,
      security_version: OPENSSH.security,
      origins: ["Debian:12.15/oldstable"],
    });
    // The candidate from the security archive: the candidate is the fix.
    expect(pkgs.find((p) => p.name === "libssl3")).toMatchObject({ candidate: "3.0.17-1~deb12u2", security: true, security_version: "3.0.17-1~deb12u2" });
    // The security archive has only the installed version: a plain update.
    const bash = pkgs.find((p) => p.name === "bash")!;
    expect(bash).toMatchObject({ candidate: "5.2.15-2+b8", security: false });
    expect("security_version" in bash).toBe(false);
    expect(pkgs.find((p) => p.name === "tzdata")).toMatchObject({ arch: "all", security: false });
    expect(r.verdict).toBe("security_update_available");
    expect(r.summary).toStartWith("4 updates, 2 security: ");

    // The command a user runs, on that root.
    mkdirSync(join(dir, "state"), { recursive: true });
    mkdirSync(join(dir, "state"), { recursive: true });
    const cli = await autopod(["status", "--json"], { env: { AUTOPOD_STATUS_ROOT: root, AUTOPOD_STATE_DIR: join(dir, "state") }, timeoutMs: 180_000 });
    const report = StatusReportSchema.parse(JSON.parse(cli.stdout));
    const apt = report.checks.find((c) => c.check === "apt")!;
    expect(apt.verdict).toBe("security_update_available");
    expect(packagesOf(apt.reasons).find((p) => p.name === "openssh-client")).toMatchObject({ security: true, security_version: OPENSSH.security });
    expect(report.updates).toEqual({ total: 4, security: 2 });
    const table = await autopod(["status", "-v"], { env: { AUTOPOD_STATUS_ROOT: root, AUTOPOD_STATE_DIR: join(dir, "state") }, timeoutMs: 180_000 });
    expect(table.stdout).toContain(`openssh-client:${arch} ${OPENSSH.installed} -> ${OPENSSH.pointRelease} [security, fixed in ${OPENSSH.security}]`);
  },
  300_000,
);

rootTest(
  "with only the security archive's older version installed, the same package is a plain update",
  async () => {
    // The host installed the security fix: what remains is the point release's newer build, not a security fix.
    const status = join(root, "var/lib/dpkg/status");
    const before = await Bun.file(status).text();
    try {
      writeFileSync(status, before.replace(`Version: ${OPENSSH.installed}`, `Version: ${OPENSSH.security}`));
      const r = await aptChecker.check(options());
      expect(packagesOf(r.reasons).find((p) => p.name === "openssh-client")).toMatchObject({
        installed: OPENSSH.security,
        candidate: OPENSSH.pointRelease,
        security: false,
      });
    } finally {
      writeFileSync(status, before);
    }
  },
  300_000,
);

describe("the apt answer is reused while nothing apt reads has changed", () => {
  /** The real runner, counting the apt-get runs. */
  function counting(): { opts: CheckOptions; aptRuns: () => number; cacheDir: string } {
    const cacheDir = join(dir, `cache-${Math.random().toString(36).slice(2)}`);
    const calls: string[][] = [];
    const opts: CheckOptions = {
      ...options(),
      cacheDir,
      run: (argv, o) => {
        calls.push(argv);
        return run(argv, o);
      },
    };
    return { opts, cacheDir, aptRuns: () => calls.filter((a) => a[0]!.endsWith("apt-get")).length };
  }

  rootTest(
    "a second check answers from the cache without running apt-get; dpkg, lists and configuration changes each make it run again",
    async () => {
      const { opts, aptRuns, cacheDir } = counting();
      const first = await aptChecker.check(opts);
      expect(aptRuns()).toBe(1);
      expect(statSync(join(cacheDir, "apt-check.json")).mode & 0o777).toBe(0o600);
      const second = await aptChecker.check(opts);
      expect(aptRuns()).toBe(1);
      expect(packagesOf(second.reasons)).toEqual(packagesOf(first.reasons));
      expect(second.verdict).toBe(first.verdict);
      expect(second.summary).toBe(first.summary);
      expect(second.reasons.at(-1)).toMatchObject({ kind: "note", message: expect.stringMatching(/^from the cache of /) });

      // dpkg installs a package: it renames a new status file over the old one.
      const status = join(root, "var/lib/dpkg/status");
      const before = await Bun.file(status).text();
      try {
        writeFileSync(`${status}-new`, before.replace(`Version: ${OPENSSH.installed}`, `Version: ${OPENSSH.security}`));
        renameSync(`${status}-new`, status);
        const changed = await aptChecker.check(opts);
        expect(aptRuns()).toBe(2);
        expect(packagesOf(changed.reasons).find((p) => p.name === "openssh-client")).toMatchObject({ installed: OPENSSH.security, security: false });
      } finally {
        writeFileSync(`${status}-new`, before);
        renameSync(`${status}-new`, status);
      }
      await aptChecker.check(opts);
      expect(aptRuns()).toBe(3);

      // apt-get update rewrote a list (same content, new times).
      const lists = join(root, "var/lib/apt/lists");
      const list = join(lists, readdirSync(lists).find((n) => n.includes("_Packages"))!);
      const later = new Date(Date.now() + 5000);
      utimesSync(list, later, later);
      await aptChecker.check(opts);
      expect(aptRuns()).toBe(4);

      // A pin added to apt's configuration.
      writeFileSync(join(root, "etc/apt/preferences.d/test"), "Package: bash\nPin: version 5.2.15-2+b7\nPin-Priority: 1001\n");
      try {
        const pinned = await aptChecker.check(opts);
        expect(aptRuns()).toBe(5);
        expect(packagesOf(pinned.reasons).find((p) => p.name === "bash")).toBeUndefined();
      } finally {
        rmSync(join(root, "etc/apt/preferences.d/test"));
      }

      // A cache file that does not parse is ignored, and replaced.
      await aptChecker.check(opts);
      expect(aptRuns()).toBe(6);
      writeFileSync(join(cacheDir, "apt-check.json"), '{"format":1,"key":"not a key"');
      const afterGarbage = await aptChecker.check(opts);
      expect(aptRuns()).toBe(7);
      expect(packagesOf(afterGarbage.reasons)).toEqual(packagesOf(first.reasons));
      await aptChecker.check(opts);
      expect(aptRuns()).toBe(7);
    },
    300_000,
  );

  rootTest(
    "`autopod status` reuses the answer across runs; --no-cache runs apt again",
    async () => {
      const env = { AUTOPOD_STATUS_ROOT: root, AUTOPOD_STATE_DIR: join(dir, "state-cli") };
      mkdirSync(env.AUTOPOD_STATE_DIR, { recursive: true });
      const apt = async (args: string[]) => {
        const r = await autopod(["status", "--json", ...args], { env, timeoutMs: 180_000 });
        return StatusReportSchema.parse(JSON.parse(r.stdout)).checks.find((c) => c.check === "apt")!;
      };
      const cold = await apt([]);
      const warm = await apt([]);
      const forced = await apt(["--no-cache"]);
      const cached = (c: typeof cold) => c.reasons.some((r) => r.kind === "note" && r.message.startsWith("from the cache of "));
      expect([cached(cold), cached(warm), cached(forced)]).toEqual([false, true, false]);
      expect(packagesOf(warm.reasons)).toEqual(packagesOf(cold.reasons));
      expect(warm.verdict).toBe("security_update_available");
      console.log(`apt check: ${cold.duration_ms} ms cold, ${warm.duration_ms} ms from the cache, ${forced.duration_ms} ms with --no-cache`);
    },
    300_000,
  );
});
