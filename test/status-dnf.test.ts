/**
 * The dnf check against the real dnf and rpm (Debian's packages dnf, rpm and
 * createrepo-c; scripts/test.sh installs them): a local RPM repository built
 * here (packages made with rpmbuild, an updateinfo.xml with a security
 * advisory added with modifyrepo_c) and installroots with older versions
 * installed with rpm, checked through the checker as a Fedora host would be.
 *
 * Debian's rpm keeps its database in ~/.rpmdb (rpm as a tool, not the system's
 * package manager); a Fedora root keeps it in /var/lib/rpm. HOME points at a
 * directory whose .rpmmacros says so, for rpm and dnf alike, as a Fedora
 * host's own macros do.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, which } from "../src/platform/linux/exec.ts";
import type { CheckOptions, PackageReason } from "../src/status/checker.ts";
import { dnfChecker } from "../src/status/dnf.ts";
import { hostPaths } from "../src/status/host-paths.ts";

const TOOLS = ["dnf", "rpm", "rpmbuild", "createrepo_c", "modifyrepo_c"];
const work = mkdtempSync(join(tmpdir(), "autopod-dnf-"));
const savedHome = process.env.HOME;
afterAll(() => {
  process.env.HOME = savedHome;
  rmSync(work, { recursive: true, force: true });
});

/** Run a command (an argument array, no shell); throw with its output if it fails. */
function must(argv: string[], okCodes: number[] = [0]): string {
  const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe", env: { ...process.env, LC_ALL: "C" } });
  if (!okCodes.includes(r.exitCode)) throw new Error(`${argv.join(" ")} failed (exit ${r.exitCode}): ${r.stderr.toString()}${r.stdout.toString()}`);
  return r.stdout.toString();
}

const SPEC = `Name: %{pkg}
Version: %{ver}
Release: 1
Summary: A package for autopod's dnf test
License: MIT
BuildArch: noarch
%description
A package for autopod's dnf test.
%install
mkdir -p %{buildroot}/usr/share/%{pkg}
echo %{ver} > %{buildroot}/usr/share/%{pkg}/version
%files
/usr/share/%{pkg}/version
`;

/** Build NAME-VERSION-1.noarch.rpm with rpmbuild; its path. */
function rpmPackage(name: string, version: string): string {
  const top = join(work, "rpmbuild");
  must(["rpmbuild", "--quiet", "--define", `_topdir ${top}`, "--define", `pkg ${name}`, "--define", `ver ${version}`, "-bb", join(work, "test.spec")]);
  return join(top, "RPMS/noarch", `${name}-${version}-1.noarch.rpm`);
}

const UPDATEINFO = `<?xml version="1.0" encoding="UTF-8"?>
<updates>
  <update from="autopod@test" status="stable" type="security" version="1">
    <id>AUTOPOD-2026-0001</id>
    <title>autopod-hello: a security update</title>
    <issued date="2026-11-01 00:00:00"/>
    <severity>Important</severity>
    <description>Fixes a flaw.</description>
    <pkglist>
      <collection short="autopod">
        <name>autopod</name>
        <package name="autopod-hello" version="1.1" release="1" epoch="0" arch="noarch" src="autopod-hello-1.1-1.src.rpm">
          <filename>autopod-hello-1.1-1.noarch.rpm</filename>
        </package>
      </collection>
    </pkglist>
  </update>
  <update from="autopod@test" status="stable" type="bugfix" version="1">
    <id>AUTOPOD-2026-0002</id>
    <title>autopod-plain: a bug fix</title>
    <issued date="2026-11-02 00:00:00"/>
    <description>Fixes a bug.</description>
    <pkglist>
      <collection short="autopod">
        <name>autopod</name>
        <package name="autopod-plain" version="2.0" release="1" epoch="0" arch="noarch" src="autopod-plain-2.0-1.src.rpm">
          <filename>autopod-plain-2.0-1.noarch.rpm</filename>
        </package>
      </collection>
    </pkglist>
  </update>
</updates>
`;

const missing = TOOLS.filter((t) => which(t) === null);
let repo: string;
const rpms: Record<string, string> = {};

/** A Fedora-like installroot with these packages installed by rpm, its dnf pointed at the local repository, its cache made. */
function installroot(name: string, packages: string[]): CheckOptions {
  const root = join(work, name);
  mkdirSync(join(root, "etc/yum.repos.d"), { recursive: true });
  mkdirSync(join(root, "etc/dnf"), { recursive: true });
  writeFileSync(join(root, "etc/os-release"), 'NAME="Fedora Linux"\nID=fedora\nVERSION_ID=39\n');
  writeFileSync(join(root, "etc/dnf/dnf.conf"), "[main]\ngpgcheck=0\n");
  writeFileSync(
    join(root, "etc/yum.repos.d/autopod-test.repo"),
    `[autopod-test]\nname=autopod test repository\nbaseurl=file://${repo}\ngpgcheck=0\nenabled=1\nmetadata_expire=never\n`,
  );
  must(["rpm", "--root", root, "--initdb"]);
  must(["rpm", "--root", root, "-i", ...packages.map((p) => rpms[p]!)]);
  // The checker reads dnf's cache only (-C), which dnf-makecache.timer keeps fresh on a real host.
  must(["dnf", "-q", "-y", "--installroot", root, "--releasever", "39", "makecache"]);
  return { paths: hostPaths({ root }), run, which: (n) => which(n), lockTimeoutMs: 1000, commandTimeoutMs: 60_000 };
}

describe("dnf check with the real dnf, against a local RPM repository", () => {
  beforeAll(() => {
    if (missing.length) throw new Error(`The dnf test needs ${missing.join(", ")}: apt-get install dnf rpm createrepo-c (scripts/test.sh does)`);
    mkdirSync(join(work, "home"));
    writeFileSync(join(work, "home/.rpmmacros"), "%_dbpath /var/lib/rpm\n");
    process.env.HOME = join(work, "home");
    writeFileSync(join(work, "test.spec"), SPEC);
    for (const [name, version] of [
      ["autopod-hello", "1.0"],
      ["autopod-hello", "1.1"],
      ["autopod-plain", "1.0"],
      ["autopod-plain", "2.0"],
      ["autopod-same", "1.0"],
    ] as const) {
      rpms[`${name}-${version}`] = rpmPackage(name, version);
    }
    // The repository holds the new versions (and the one that has none).
    repo = join(work, "repo");
    mkdirSync(repo);
    for (const p of ["autopod-hello-1.1", "autopod-plain-2.0", "autopod-same-1.0"]) must(["cp", rpms[p]!, repo]);
    must(["createrepo_c", "--quiet", repo]);
    writeFileSync(join(work, "updateinfo.xml"), UPDATEINFO);
    must(["modifyrepo_c", "--mdtype", "updateinfo", join(work, "updateinfo.xml"), join(repo, "repodata")]);
    expect(readdirSync(join(repo, "repodata")).some((n) => n.endsWith("updateinfo.xml.gz"))).toBe(true);
  }, 300_000);

  test("older versions installed: a security update (its advisory in updateinfo) and a plain one, each with its installed and candidate version", async () => {
    const r = await dnfChecker.check(installroot("old", ["autopod-hello-1.0", "autopod-plain-1.0", "autopod-same-1.0"]));
    expect(r.verdict).toBe("security_update_available");
    expect(r.reasons).toEqual([
      { kind: "package", name: "autopod-hello", arch: "noarch", installed: "1.0-1", candidate: "1.1-1", security: true, origins: ["autopod-test"] },
      { kind: "package", name: "autopod-plain", arch: "noarch", installed: "1.0-1", candidate: "2.0-1", security: false, origins: ["autopod-test"] },
    ] satisfies PackageReason[]);
    expect(r.source).toBe("dnf -C check-update, dnf -C updateinfo list --updates, rpm -qa");
  }, 120_000);

  test("only the bug fix pending: an update, not a security one", async () => {
    const r = await dnfChecker.check(installroot("bugfix", ["autopod-hello-1.1", "autopod-plain-1.0"]));
    expect(r.verdict).toBe("update_available");
    expect(r.reasons).toEqual([
      { kind: "package", name: "autopod-plain", arch: "noarch", installed: "1.0-1", candidate: "2.0-1", security: false, origins: ["autopod-test"] },
    ]);
  }, 120_000);

  test("the newest versions installed: ok, nothing pending", async () => {
    const r = await dnfChecker.check(installroot("new", ["autopod-hello-1.1", "autopod-plain-2.0", "autopod-same-1.0"]));
    expect(r.verdict).toBe("ok");
    expect(r.reasons).toEqual([]);
  }, 120_000);
});
