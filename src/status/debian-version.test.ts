import { describe, expect, test } from "bun:test";
import { compareDebianVersions, parseDebianVersion } from "./debian-version.ts";

const sign = (n: number) => Math.sign(n) || 0;

describe("compareDebianVersions", () => {
  // From dpkg's own tests (lib/dpkg/t/t-version.c) and Debian Policy 5.6.12.
  const cases: Array<[string, string, number]> = [
    ["0", "0", 0],
    ["0", "00", 0],
    ["1.0", "1.0-0", 0],
    ["1:0", "0:0", 1],
    ["1:1.0", "2.0", 1],
    ["0:1.0", "1.0", 0],
    ["1.0", "1.0~", 1],
    ["1.0~", "1.0~~", 1],
    ["1.0~~a", "1.0~~", 1],
    ["1.0~~", "1.0~~a", -1],
    ["1.0~rc1", "1.0", -1],
    ["1.0~rc1", "1.0~rc2", -1],
    ["1.0", "1.0+b1", -1],
    ["1.0a", "1.0", 1],
    ["1.0a", "1.0+", -1],
    ["1.0-1", "1.0-1~bpo1", 1],
    ["2.30-0ubuntu1", "2.30-0ubuntu1~ppa1", 1],
    ["1.2.3-1", "1.2.3-1.1", -1],
    ["1.2.10", "1.2.9", 1],
    ["1.002", "1.2", 0],
    ["3.0.22-1~deb12u2", "3.0.19-1~deb12u2", 1],
    ["12.4+deb12u15", "12.4+deb12u11", 1],
    ["5.2.15-2+b13", "5.2.15-2+b8", 1],
    ["2:25.1.0-2+deb12u5", "2:25.1.0-2+deb12u3", 1],
    ["8:6.9.11.60+dfsg-1.6+deb12u15", "7:7.0", 1],
    ["1.0-1-1", "1.0-1", 1], // upstream "1.0-1" > "1.0"
    ["a", "b", -1],
    ["a", "A", 1], // letters compare by ASCII
    ["1.0.", "1.0", 1], // non-letters sort after letters and end
    ["1.0.", "1.0a", 1],
    ["1~", "1", -1],
  ];
  for (const [a, b, want] of cases) {
    test(`${a} vs ${b} is ${want}`, () => {
      expect(sign(compareDebianVersions(a, b))).toBe(want);
      expect(sign(compareDebianVersions(b, a))).toBe(-want || 0);
    });
  }
});

describe("parseDebianVersion", () => {
  test("splits epoch, upstream version and revision at the last hyphen", () => {
    expect(parseDebianVersion("2:1.0-beta-3")).toEqual({ epoch: 2, upstream: "1.0-beta", revision: "3" });
    expect(parseDebianVersion(" 1.0 ")).toEqual({ epoch: 0, upstream: "1.0", revision: "" });
  });
  const bad = ["", "a:1", "1:", "1.0-", "1 0", "-1"];
  for (const v of bad) test(`rejects "${v}"`, () => expect(() => parseDebianVersion(v)).toThrow());
});
