import { expect, test } from "bun:test";
import { parseApkVersion, splitApkPackage } from "./apk.ts";

// apk does not run on this Debian host: a hand-written fixture in apk's output format.
test("parseApkVersion (fixture, not a capture: apk does not run here)", async () => {
  const ups = parseApkVersion(await Bun.file(new URL("testdata/apk-version.fixture.txt", import.meta.url)).text());
  expect(ups).toHaveLength(5);
  expect(ups[0]).toEqual({ name: "busybox", installed: "1.36.1-r5", candidate: "1.36.1-r7" });
  expect(ups[1]!.name).toBe("busybox-binsh");
  expect(ups[4]).toEqual({ name: "py3-setuptools-pyc", installed: "68.2.2-r0", candidate: "68.2.2-r1" });
});

test("splitApkPackage", () => {
  expect(splitApkPackage("libssl3-3.1.4-r1")).toEqual({ name: "libssl3", version: "3.1.4-r1" });
  expect(splitApkPackage("py3-foo-2-1.0_rc1-r0")).toEqual({ name: "py3-foo-2", version: "1.0_rc1-r0" });
  expect(splitApkPackage("nonsense")).toBeNull();
});
