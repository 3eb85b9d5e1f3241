import { expect, test } from "bun:test";
import { compareVersions, criuMinimumFor, parseCriuVersion, parseVersion } from "./criu.ts";

test("parseCriuVersion reads real criu --version output", () => {
  expect(parseCriuVersion("Version: 3.17.1\n")).toBe("3.17.1");
  expect(parseCriuVersion("Version: 4.2.1\nGitID: v4.2.1\n")).toBe("4.2.1");
  expect(parseCriuVersion("Version: 4.2\n")).toBe("4.2");
  expect(parseCriuVersion("garbage")).toBeNull();
});

test("criuMinimumFor follows the kernel", () => {
  expect(criuMinimumFor("6.18.44-fc-v669").min).toBe("4.2");
  expect(criuMinimumFor("6.16.0").min).toBe("4.2");
  expect(criuMinimumFor("6.13.1-1-amd64").min).toBe("4.1");
  expect(criuMinimumFor("6.1.0-26-amd64").min).toBe("3.15");
});

test("version comparison", () => {
  expect(compareVersions(parseVersion("3.17.1")!, parseVersion("4.2")!)).toBe(-1);
  expect(compareVersions(parseVersion("4.2.1")!, parseVersion("4.2")!)).toBe(1);
  expect(compareVersions(parseVersion("4.2")!, parseVersion("4.2.0")!)).toBe(0);
});
