import { describe, expect, test } from "bun:test";
import { securityFix } from "./apt.ts";
import type { AptRelease } from "./apt-release.ts";
import { type OfferedVersion, pairIndexes, parseOfferedVersions, releasePrefix } from "./apt-security-versions.ts";

describe("pairIndexes: each Packages list with its Release file, as apt names them", () => {
  const main: AptRelease = { origin: "Debian", label: "Debian", suite: "oldstable", codename: "bookworm" };
  const updates: AptRelease = { origin: "Debian", label: "Debian", suite: "oldstable-updates", codename: "bookworm-updates" };
  const security: AptRelease = { origin: "Debian", label: "Debian-Security", suite: "oldstable-security", codename: "bookworm-security" };
  const flat: AptRelease = { origin: "Example" };
  // List names as apt writes them in /var/lib/apt/lists (a mirror, renamed), plus a flat repository.
  const names = [
    "auxfiles",
    "mirror.example_debian-security_dists_bookworm-security_InRelease",
    "mirror.example_debian-security_dists_bookworm-security_main_binary-amd64_Packages.lz4",
    "mirror.example_debian_dists_bookworm-updates_InRelease",
    "mirror.example_debian_dists_bookworm-updates_main_binary-amd64_Packages.lz4",
    "mirror.example_debian_dists_bookworm_InRelease",
    "mirror.example_debian_dists_bookworm_main_binary-amd64_Packages.lz4",
    "mirror.example_debian_dists_bookworm_main_i18n_Translation-en",
    "example.org_repo_._Release",
    "example.org_repo_._Packages",
    "lock",
    "partial",
  ];
  const releases = new Map(
    names
      .map((n) => releasePrefix(n))
      .filter((p): p is string => p !== null)
      .map((p) => [p, p.includes("security") ? security : p.includes("updates") ? updates : p.startsWith("example") ? flat : main] as const),
  );

  test("releasePrefix", () => {
    expect(releasePrefix("mirror.example_debian_dists_bookworm_InRelease")).toBe("mirror.example_debian_dists_bookworm");
    expect(releasePrefix("example.org_repo_._Release")).toBe("example.org_repo_.");
    expect(releasePrefix("mirror.example_debian_dists_bookworm_InRelease.gpg")).toBeNull();
  });

  test("bookworm's lists are not taken for bookworm-updates' (prefix up to the underscore)", () => {
    const paired = pairIndexes(names, releases);
    expect(paired.map((p) => [p.name, p.release.suite ?? p.release.origin])).toEqual([
      ["mirror.example_debian-security_dists_bookworm-security_main_binary-amd64_Packages.lz4", "oldstable-security"],
      ["mirror.example_debian_dists_bookworm-updates_main_binary-amd64_Packages.lz4", "oldstable-updates"],
      ["mirror.example_debian_dists_bookworm_main_binary-amd64_Packages.lz4", "oldstable"],
      ["example.org_repo_._Packages", "Example"],
    ]);
  });

  test("a list without a Release file is left out", () => {
    expect(pairIndexes(["other.org_x_dists_y_main_binary-amd64_Packages"], releases)).toEqual([]);
  });
});

test("parseOfferedVersions reads Package, Architecture and Version of the wanted packages only", () => {
  const text = [
    "Package: openssh-client",
    "Source: openssh",
    "Version: 1:9.2p1-2+deb12u9",
    "Architecture: amd64",
    "Description: secure shell (SSH) client",
    " Package: not-a-field",
    "",
    "Package: bash",
    "Version: 5.2.15-2+b9",
    "Architecture: amd64",
    "",
    "Package: tzdata",
    "Architecture: all",
    "Version: 2025b-0+deb12u2",
  ].join("\n");
  expect(parseOfferedVersions(text, new Set(["openssh-client", "tzdata"]))).toEqual([
    { name: "openssh-client", arch: "amd64", version: "1:9.2p1-2+deb12u9" },
    { name: "tzdata", arch: "all", version: "2025b-0+deb12u2" },
  ]);
});

describe("securityFix: the rule unattended-upgrades applies (adjust_candidate)", () => {
  const ssh = { name: "openssh-client", arch: "amd64", installed: "1:9.2p1-2+deb12u6", candidate: "1:9.2p1-2+deb12u10" };
  const offered: OfferedVersion[] = [
    { name: "openssh-client", arch: "amd64", version: "1:9.2p1-2+deb12u9" },
    { name: "openssh-client", arch: "amd64", version: "1:9.2p1-2+deb12u5" },
    { name: "openssh-client", arch: "i386", version: "1:9.2p1-2+deb12u10" },
  ];

  test("the candidate from a point release, an older fix in the security archive: that fix", () => {
    expect(securityFix(ssh, false, offered)).toBe("1:9.2p1-2+deb12u9");
  });
  test("the candidate itself from a security archive: the candidate", () => {
    expect(securityFix(ssh, true, [])).toBe(ssh.candidate);
  });
  test("only versions newer than the installed one count", () => {
    expect(securityFix({ ...ssh, installed: "1:9.2p1-2+deb12u9" }, false, offered)).toBeUndefined();
  });
  test("a security version newer than the candidate (pinned away) does not count; the newest at or below it does", () => {
    expect(securityFix({ ...ssh, candidate: "1:9.2p1-2+deb12u7" }, false, offered)).toBeUndefined();
    expect(securityFix({ ...ssh, installed: "1:9.2p1-2+deb12u1", candidate: "1:9.2p1-2+deb12u7" }, false, offered)).toBe("1:9.2p1-2+deb12u5");
  });
  test("another architecture's version does not count; Architecture: all does", () => {
    expect(securityFix({ ...ssh, installed: "1:9.2p1-2+deb12u9" }, false, offered)).toBeUndefined(); // the i386 deb12u10 is not ours
    expect(
      securityFix({ ...ssh, name: "tzdata", installed: "2024a-0+deb12u1", candidate: "2025b-0+deb12u2" }, false, [
        { name: "tzdata", arch: "all", version: "2025b-0+deb12u1" },
      ]),
    ).toBe("2025b-0+deb12u1");
  });
  test("another package's version does not count", () => {
    expect(securityFix(ssh, false, [{ name: "openssh-server", arch: "amd64", version: "1:9.2p1-2+deb12u9" }])).toBeUndefined();
  });
});
