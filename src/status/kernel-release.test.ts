import { describe, expect, test } from "bun:test";
import { compareKernelReleases, parseKernelRelease } from "./kernel-release.ts";

describe("parseKernelRelease", () => {
  const cases: Array<[string, string, string, string]> = [
    ["6.1.0-18-amd64", "6.1.0", "18", "amd64"],
    ["6.1.0-56-cloud-amd64", "6.1.0", "56", "cloud-amd64"],
    ["6.1.0-0.deb11.17-amd64", "6.1.0", "0.deb11.17", "amd64"],
    ["6.12.12+deb13-amd64", "6.12.12", "+deb13", "amd64"],
    ["6.12.9+bpo-cloud-amd64", "6.12.9", "+bpo", "cloud-amd64"],
    ["5.15.0-91-generic", "5.15.0", "91", "generic"],
    ["5.15.0-1057-azure", "5.15.0", "1057", "azure"],
    ["6.5.6-300.fc39.x86_64", "6.5.6", "300.fc39", "x86_64"],
    ["5.14.0-362.8.1.el9_3.x86_64", "5.14.0", "362.8.1.el9_3", "x86_64"],
    ["5.14.0-362.el9.x86_64+debug", "5.14.0", "362.el9", "x86_64+debug"],
    ["5.14.0-362.8.1.rt14.343.el9_3.x86_64", "5.14.0", "362.8.1.rt14.343.el9_3", "x86_64+rt"],
    ["6.7.4-arch1-1", "6.7.4", "1.1", "arch#-#"],
    ["6.6.15-1-lts", "6.6.15", "1", "lts"],
    ["6.18.44-fc-v669", "6.18.44", "669", "fc-v#"],
    ["6.1.21-v8+", "6.1.21", "8", "v#+"],
    ["6.6.13", "6.6.13", "", ""],
  ];
  for (const [release, upstream, abi, flavour] of cases) {
    test(release, () => expect(parseKernelRelease(release)).toEqual({ release, upstream, abi, flavour }));
  }
});

describe("compareKernelReleases", () => {
  const cases: Array<[string, string, number]> = [
    ["6.1.0-18-amd64", "6.1.0-56-amd64", -1],
    ["6.1.0-0.deb11.17-amd64", "6.1.0-18-amd64", -1],
    ["6.5.6-300.fc39.x86_64", "6.7.9-200.fc39.x86_64", -1],
    ["5.14.0-427.13.1.el9_4.x86_64", "5.14.0-362.8.1.el9_3.x86_64", 1],
    ["6.18.44-fc-v669", "6.18.44-fc-v700", -1],
    ["6.10.1-1-lts", "6.9.12-3-lts", 1],
    ["6.1.0-18-amd64", "6.1.0-18-amd64", 0],
  ];
  for (const [a, b, want] of cases)
    test(`${a} vs ${b}`, () => expect(Math.sign(compareKernelReleases(parseKernelRelease(a), parseKernelRelease(b))) || 0).toBe(want));
});
