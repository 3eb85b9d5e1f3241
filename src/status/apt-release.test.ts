import { describe, expect, test } from "bun:test";
import { isSecurityArchive, parseRelease } from "./apt-release.ts";

const fixture = (name: string) => Bun.file(new URL(`testdata/${name}`, import.meta.url)).text();

describe("parseRelease on this host's InRelease files (checksums cut short)", () => {
  const cases: Array<[string, object, boolean]> = [
    ["debian-bookworm.InRelease", { origin: "Debian", label: "Debian", suite: "oldstable", codename: "bookworm", version: "12.15" }, false],
    ["debian-bookworm-updates.InRelease", { origin: "Debian", label: "Debian", suite: "oldstable-updates", codename: "bookworm-updates" }, false],
    [
      "debian-security-bookworm-security.InRelease",
      { origin: "Debian", label: "Debian-Security", suite: "oldstable-security", codename: "bookworm-security", version: "12" },
      true,
    ],
  ];
  for (const [file, want, security] of cases) {
    test(file, async () => {
      const r = parseRelease(await fixture(file));
      expect(r).toMatchObject(want);
      expect(isSecurityArchive(r)).toBe(security);
    });
  }
});

describe("isSecurityArchive follows unattended-upgrades' default origins", () => {
  const cases: Array<[string, object, boolean]> = [
    ["Debian security", { origin: "Debian", label: "Debian-Security", codename: "bookworm-security" }, true],
    ["Debian security named by label only", { label: "Debian-Security", suite: "oldstable-security" }, true],
    ["Debian point release", { origin: "Debian", label: "Debian", suite: "oldstable", codename: "bookworm" }, false],
    ["Debian updates", { origin: "Debian", label: "Debian", suite: "stable-updates" }, false],
    ["Debian backports", { origin: "Debian Backports", label: "Debian Backports", suite: "bookworm-backports" }, false],
    ["Ubuntu security pocket", { origin: "Ubuntu", label: "Ubuntu", suite: "jammy-security" }, true],
    ["Ubuntu updates pocket", { origin: "Ubuntu", label: "Ubuntu", suite: "jammy-updates" }, false],
    ["Ubuntu ESM infra", { origin: "UbuntuESM", label: "UbuntuESM", suite: "jammy-infra-security" }, true],
    ["Ubuntu ESM apps", { origin: "UbuntuESMApps", label: "UbuntuESMApps", suite: "jammy-apps-security" }, true],
    ["Ubuntu ESM apps updates", { origin: "UbuntuESMApps", label: "UbuntuESMApps", suite: "jammy-apps-updates" }, false],
    ["a third party calling its suite -security", { origin: "Example", label: "Example", suite: "stable-security" }, false],
    ["a host without a Release file", { suite: "localhost" }, false],
  ];
  for (const [name, r, want] of cases) test(name, () => expect(isSecurityArchive(r)).toBe(want));
});
