import { describe, expect, test } from "bun:test";
import { parseDeb822, clearsignedBody } from "./deb822.ts";
import { isBroken, isOnDisk, parseDpkgStatus } from "./dpkg-status.ts";

const fixture = (name: string) => Bun.file(new URL(`testdata/${name}`, import.meta.url)).text();

describe("parseDpkgStatus", () => {
  test("real stanzas from this host's /var/lib/dpkg/status", async () => {
    const pkgs = parseDpkgStatus(await fixture("dpkg-status.txt"));
    expect(pkgs.map((p) => p.name)).toEqual(["adduser", "base-files", "bash", "libc6", "libgcrypt20", "libssl3", "tzdata", "zip"]);
    const by = new Map(pkgs.map((p) => [p.name, p]));
    expect(by.get("bash")).toEqual({ name: "bash", arch: "amd64", version: "5.2.15-2+b8", want: "install", flag: "ok", state: "installed", source: "bash" });
    expect(by.get("libssl3")?.source).toBe("openssl");
    expect(by.get("adduser")?.arch).toBe("all");
    expect(pkgs.every(isOnDisk)).toBe(true);
    expect(pkgs.some(isBroken)).toBe(false);
  });

  test("states dpkg leaves behind (hand-written stanzas)", () => {
    const text = [
      "Package: gone",
      "Status: deinstall ok config-files",
      "Version: 1.0-1",
      "",
      "Package: halfway",
      "Status: install reinstreq half-installed",
      "Version: 2.0-1",
      "",
      "Package: unconfigured",
      "Status: install ok unpacked",
      "Version: 3.0-1",
    ].join("\n");
    const [gone, halfway, unconfigured] = parseDpkgStatus(text);
    expect(isOnDisk(gone!)).toBe(false);
    expect(isBroken(halfway!)).toBe(true);
    expect(isBroken(unconfigured!)).toBe(true);
    expect(isOnDisk(unconfigured!)).toBe(true);
  });
});

describe("parseDeb822", () => {
  test("continuation lines, comments, CRLF and blank-line separators", () => {
    const text = "# comment\r\nA: 1\r\nB:\r\n two\r\n three\r\n\r\n\r\nA: 2\n";
    expect(parseDeb822(text)).toEqual([{ A: "1", B: "two\nthree" }, { A: "2" }]);
  });
  test("clearsignedBody strips the armor and dash-escaping", () => {
    const text = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nOrigin: X\n- -dash\n-----BEGIN PGP SIGNATURE-----\nabc\n";
    expect(clearsignedBody(text)).toBe("Origin: X\n-dash");
    expect(clearsignedBody("Origin: Y\n")).toBe("Origin: Y\n");
  });
});
