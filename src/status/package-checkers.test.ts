/**
 * The apt, dnf and apk checkers end to end on built fake roots, with a runner
 * that answers with captured (apt) or fixture (dnf, apk) output.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RunResult } from "../platform/linux/exec.ts";
import { apkChecker } from "./apk.ts";
import { aptChecker } from "./apt.ts";
import type { CheckOptions, PackageReason } from "./checker.ts";
import { dnfChecker } from "./dnf.ts";
import { hostPaths } from "./host-paths.ts";

const testdata = (name: string) => new URL(`testdata/${name}`, import.meta.url).pathname;
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function fakeRoot(osId: string, files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), "autopod-pm-"));
  dirs.push(root);
  mkdirSync(join(root, "etc"), { recursive: true });
  writeFileSync(join(root, "etc/os-release"), `ID=${osId}\n`);
  for (const [p, from] of Object.entries(files)) {
    mkdirSync(join(root, p, ".."), { recursive: true });
    if (from.startsWith("@")) copyFileSync(testdata(from.slice(1)), join(root, p));
    else writeFileSync(join(root, p), from);
  }
  return root;
}

function options(root: string, outputs: Record<string, { stdout?: string; exitCode?: number }>, calls: string[][] = []): CheckOptions {
  return {
    paths: hostPaths({ root }),
    which: (name) => `/usr/bin/${name}`,
    lockTimeoutMs: 200,
    commandTimeoutMs: 5000,
    run: async (argv): Promise<RunResult> => {
      calls.push(argv);
      const key = Object.keys(outputs).find((k) => argv.join(" ").includes(k));
      if (!key) throw new Error(`unexpected command ${argv.join(" ")}`);
      const o = outputs[key]!;
      return { argv, exitCode: o.exitCode ?? 0, signal: null, stdout: o.stdout ?? "", stderr: "", timedOut: false, durationMs: 1 };
    },
  };
}

describe("aptChecker on a fake Debian root with this host's captured simulation", () => {
  test("security updates classified by the Release files; other managers not applicable", async () => {
    const root = fakeRoot("debian", {
      "var/lib/dpkg/status": "@dpkg-status.txt",
      "var/lib/apt/lists/x_debian_dists_bookworm_InRelease": "@debian-bookworm.InRelease",
      "var/lib/apt/lists/x_debian-security_dists_bookworm-security_InRelease": "@debian-security-bookworm-security.InRelease",
    });
    const calls: string[][] = [];
    const opts = options(root, { "dist-upgrade": { stdout: await Bun.file(testdata("apt-get-s-dist-upgrade.txt")).text() } }, calls);
    const r = await aptChecker.check(opts);
    expect(r.verdict).toBe("security_update_available");
    const pkgs = r.reasons.filter((x): x is PackageReason => x.kind === "package");
    expect(pkgs).toHaveLength(128);
    expect(pkgs.filter((p) => p.security)).toHaveLength(76); // what `apt list --upgradable` showed from *-security here
    expect(pkgs.find((p) => p.name === "libssl3")).toEqual({
      kind: "package",
      name: "libssl3",
      arch: "amd64",
      installed: "3.0.19-1~deb12u2",
      candidate: "3.0.22-1~deb12u2",
      security: true,
      security_version: "3.0.22-1~deb12u2",
      origins: ["Debian-Security:12/oldstable-security"],
    });
    expect(pkgs.find((p) => p.name === "bash")?.security).toBe(false);
    expect(pkgs[0]!.security).toBe(true); // security first
    expect(r.summary).toStartWith("128 updates, 76 security: ");
    // simulation only, never locking, pointed at the fake root
    expect(calls[0]).toEqual(expect.arrayContaining(["--simulate", "Debug::NoLocking=1", `Dir=${root}`, "dist-upgrade"]));
    expect((await dnfChecker.check(opts)).verdict).toBe("not_applicable");
    expect((await apkChecker.check(opts)).verdict).toBe("not_applicable");
  });

  test("nothing to upgrade: ok; apt-get failing: error with apt's message", async () => {
    const root = fakeRoot("debian", {
      "var/lib/dpkg/status": "@dpkg-status.txt",
      "var/lib/apt/lists/x_debian_dists_bookworm_InRelease": "@debian-bookworm.InRelease",
    });
    const ok = await aptChecker.check(
      options(root, { "dist-upgrade": { stdout: "Reading package lists...\n0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n" } }),
    );
    expect(ok).toMatchObject({ verdict: "ok", summary: "no pending updates" });
    const bad = options(root, {});
    bad.run = async (argv) => ({
      argv,
      exitCode: 100,
      signal: null,
      stdout: "",
      stderr: "E: The package lists or status file could not be parsed or opened.\n",
      timedOut: false,
      durationMs: 1,
    });
    expect(await aptChecker.check(bad)).toMatchObject({
      verdict: "error",
      error: '"apt-get --simulate dist-upgrade" exited with status 100: E: The package lists or status file could not be parsed or opened.',
    });
  });
});

test("no package lists at all is an error, not a false all clear; old lists are called out", async () => {
  const bare = fakeRoot("debian", { "var/lib/dpkg/status": "@dpkg-status.txt" });
  const none = await aptChecker.check(options(bare, { "dist-upgrade": { stdout: "0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n" } }));
  expect(none.verdict).toBe("error");
  expect(none.error).toContain("no package lists");
  const old = fakeRoot("debian", { "var/lib/dpkg/status": "@dpkg-status.txt", "var/lib/apt/lists/x_dists_bookworm_InRelease": "@debian-bookworm.InRelease" });
  const tenDaysAgo = new Date(Date.now() - 10 * 86_400_000);
  utimesSync(join(old, "var/lib/apt/lists/x_dists_bookworm_InRelease"), tenDaysAgo, tenDaysAgo);
  const r = await aptChecker.check(options(old, { "dist-upgrade": { stdout: "0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n" } }));
  expect(r).toMatchObject({ verdict: "ok", summary: "no pending updates (lists 10 days old)" });
});

describe("dnfChecker on a fake Fedora root (fixtures, not captures: dnf does not run here)", () => {
  test("security from updateinfo, installed versions from rpm -qa", async () => {
    const root = fakeRoot("fedora", { "var/lib/rpm/rpmdb.sqlite": "" });
    const opts = options(root, {
      "check-update": { stdout: await Bun.file(testdata("dnf4-check-update.fixture.txt")).text(), exitCode: 100 },
      "updateinfo list": { stdout: await Bun.file(testdata("dnf4-updateinfo-list.fixture.txt")).text() },
      "-qa": { stdout: await Bun.file(testdata("rpm-qa.fixture.txt")).text() },
    });
    const r = await dnfChecker.check(opts);
    expect(r.verdict).toBe("security_update_available");
    const pkgs = r.reasons.filter((x): x is PackageReason => x.kind === "package");
    expect(pkgs.filter((p) => p.security).map((p) => p.name)).toEqual(["glibc", "glibc-common", "kernel", "openssl-libs"]);
    expect(pkgs.find((p) => p.name === "kernel")).toMatchObject({ installed: "6.6.14-200.fc39", candidate: "6.7.9-200.fc39", origins: ["updates"] });
    expect((await aptChecker.check(opts)).verdict).toBe("not_applicable");
  });
  test("check-update exit 1 is an error", async () => {
    const root = fakeRoot("rhel", { "var/lib/rpm/rpmdb.sqlite": "" });
    const r = await dnfChecker.check(options(root, { "check-update": { exitCode: 1 }, "updateinfo list": {}, "-qa": {} }));
    expect(r.verdict).toBe("error");
  });
});

test("apkChecker on a fake Alpine root (fixture, not a capture: apk does not run here)", async () => {
  const root = fakeRoot("alpine", { "lib/apk/db/installed": "" });
  const r = await apkChecker.check(options(root, { "version -l": { stdout: await Bun.file(testdata("apk-version.fixture.txt")).text() } }));
  expect(r.verdict).toBe("update_available");
  expect(r.reasons).toHaveLength(5);
});
