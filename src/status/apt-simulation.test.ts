import { describe, expect, test } from "bun:test";
import { parseAptSimulation, parseArchiveRef } from "./apt-simulation.ts";

const fixture = (name: string) => Bun.file(new URL(`testdata/${name}`, import.meta.url)).text();

describe("parseAptSimulation on real captured output", () => {
  test("dist-upgrade on this bookworm host (apt 2.6): 128 upgrades with installed and candidate versions", async () => {
    const sim = parseAptSimulation(await fixture("apt-get-s-dist-upgrade.txt"));
    expect(sim.installs).toHaveLength(128);
    expect(sim.removals).toEqual([]);
    expect(sim.keptBack).toEqual([]);
    const byName = new Map(sim.installs.map((i) => [i.name, i]));
    expect(byName.get("libssl3")).toEqual({
      name: "libssl3",
      installed: "3.0.19-1~deb12u2",
      candidate: "3.0.22-1~deb12u2",
      arch: "amd64",
      archives: [{ text: "Debian-Security:12/oldstable-security", label: "Debian-Security", version: "12", suite: "oldstable-security" }],
    });
    expect(byName.get("tzdata")?.arch).toBe("all");
    expect(byName.get("libgcrypt20")?.archives.map((a) => a.text)).toEqual(["Debian:12.15/oldstable", "Debian-Security:12/oldstable-security"]);
    expect(byName.get("base-files")).toMatchObject({ installed: "12.4+deb12u11", candidate: "12.4+deb12u15" });
  });

  test("install pulling in new packages: new ones have no installed version", async () => {
    const sim = parseAptSimulation(await fixture("apt-get-s-install-new.txt"));
    const news = sim.installs.filter((i) => i.installed === undefined).map((i) => i.name);
    expect(news).toContain("linux-image-6.1.0-56-cloud-amd64");
    expect(news).toHaveLength(12);
    expect(sim.installs.filter((i) => i.installed !== undefined)).toHaveLength(8);
  });

  test("removals, kept-back packages and foreign architectures", () => {
    const text = [
      "The following packages have been kept back:",
      "  linux-image-amd64 openssl",
      "  zip",
      "0 upgraded, 0 newly installed, 1 to remove and 3 not upgraded.",
      "Remv zip [3.0-13]",
      "Inst libc6:i386 [2.36-9+deb12u13] (2.36-9+deb12u14 Debian:12.15/oldstable [i386])",
      "Inst local-thing [1.0] (1.1 [amd64])",
    ].join("\n");
    const sim = parseAptSimulation(text);
    expect(sim.keptBack).toEqual(["linux-image-amd64", "openssl", "zip"]);
    expect(sim.removals).toEqual([{ name: "zip", installed: "3.0-13" }]);
    expect(sim.installs[0]).toMatchObject({ name: "libc6:i386", arch: "i386", candidate: "2.36-9+deb12u14" });
    expect(sim.installs[1]).toMatchObject({ name: "local-thing", installed: "1.0", candidate: "1.1", archives: [] });
  });
});

describe("parseArchiveRef", () => {
  const cases: Array<[string, object]> = [
    ["Debian-Security:12/oldstable-security", { label: "Debian-Security", version: "12", suite: "oldstable-security" }],
    ["Ubuntu:22.04/jammy-security", { label: "Ubuntu", version: "22.04", suite: "jammy-security" }],
    ["UbuntuESMApps:22.04/jammy-apps-security", { label: "UbuntuESMApps", version: "22.04", suite: "jammy-apps-security" }],
    ["Debian:unstable", { label: "Debian", suite: "unstable" }],
    ["1.0/nodistro", { version: "1.0", suite: "nodistro" }],
    ["localhost", { suite: "localhost" }],
  ];
  for (const [text, want] of cases) test(text, () => expect(parseArchiveRef(text)).toEqual({ text, label: undefined, version: undefined, ...want } as never));
});
