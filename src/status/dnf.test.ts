import { describe, expect, test } from "bun:test";
import { parseDnfCheckUpdate, parseDnfUpdateinfo, parseNevra, parseRpmQa } from "./dnf.ts";

// Hand-written fixtures in dnf's documented output formats (dnf 5 and yum among them), not
// captures; test/status-dnf.test.ts runs the real dnf 4 against a local RPM repository.
const fixture = (name: string) => Bun.file(new URL(`testdata/${name}`, import.meta.url)).text();

describe("dnf parsers (hand-written fixtures, not captures)", () => {
  test("check-update fixture: rows, a wrapped long name, obsoletes ignored", async () => {
    const ups = parseDnfCheckUpdate(await fixture("dnf4-check-update.fixture.txt"));
    expect(ups.map((u) => `${u.name}.${u.arch}`)).toEqual([
      "NetworkManager.x86_64",
      "NetworkManager-libnm.x86_64",
      "glibc.x86_64",
      "glibc-common.x86_64",
      "kernel.x86_64",
      "openssl-libs.x86_64",
      "python3-setuptools-wheel-and-a-very-long-name.noarch",
    ]);
    expect(ups[0]).toEqual({ name: "NetworkManager", arch: "x86_64", evr: "1:1.44.2-1.fc39", repo: "updates" });
    expect(ups[6]).toMatchObject({ evr: "67.7.2-7.fc39", repo: "updates" });
  });

  test("updateinfo list fixture, dnf 4 format: Sec. marks security", async () => {
    const adv = parseDnfUpdateinfo(await fixture("dnf4-updateinfo-list.fixture.txt"));
    expect(adv.filter((a) => a.security).map((a) => a.name)).toEqual(["openssl-libs", "glibc", "glibc-common", "kernel"]);
    expect(adv[0]).toEqual({ id: "FEDORA-2024-1a2b3c4d5e", security: true, name: "openssl-libs", evr: "1:3.1.1-4.fc39", arch: "x86_64" });
    expect(adv.find((a) => a.name === "NetworkManager")?.security).toBe(false);
  });

  test("updateinfo list fixture, dnf 5 format: a header and a type column", async () => {
    const adv = parseDnfUpdateinfo(await fixture("dnf5-updateinfo-list.fixture.txt"));
    expect(adv.map((a) => [a.name, a.security])).toEqual([
      ["openssl-libs", true],
      ["NetworkManager", false],
      ["kernel", true],
    ]);
  });

  test("rpm -qa fixture: newest EVR per name.arch, (none) epochs dropped", async () => {
    const m = parseRpmQa(await fixture("rpm-qa.fixture.txt"));
    expect(m.get("kernel.x86_64")).toBe("6.6.14-200.fc39");
    expect(m.get("openssl-libs.x86_64")).toBe("1:3.1.1-1.fc39");
    expect(m.get("glibc.x86_64")).toBe("2.38-14.fc39");
  });

  test("parseNevra", () => {
    expect(parseNevra("openssl-libs-1:3.1.1-4.fc39.x86_64")).toEqual({ name: "openssl-libs", evr: "1:3.1.1-4.fc39", arch: "x86_64" });
    expect(parseNevra("kernel-6.7.9-200.fc39.x86_64")).toEqual({ name: "kernel", evr: "6.7.9-200.fc39", arch: "x86_64" });
    expect(parseNevra("2024-03-01")).toBeNull();
  });
});
