import { expect, test } from "bun:test";
import { formatBytes, parseSize, POD_NAME, stateLabel } from "./pod.ts";

test("sizes", () => {
  expect(parseSize("64m")).toBe(64 * 2 ** 20);
  expect(parseSize("64MiB")).toBe(64 * 2 ** 20);
  expect(parseSize("1.5G")).toBe(1.5 * 2 ** 30);
  expect(parseSize("4096")).toBe(4096);
  expect(parseSize("12 k")).toBe(12 * 1024);
  for (const bad of ["", "m", "-1m", "1x", "1mm", "lots"]) expect(parseSize(bad)).toBeNull();
  expect(formatBytes(32 * 2 ** 20)).toBe("32 MiB");
  expect(formatBytes(1536)).toBe("1.5 KiB");
  expect(formatBytes(100)).toBe("100 B");
});

test("states as ps shows them", () => {
  expect(stateLabel({ state: "running", exit: null })).toBe("running");
  expect(stateLabel({ state: "exited", exit: { code: 3, signal: null, reason: null, at: "" } })).toBe("exited(3)");
  expect(stateLabel({ state: "exited", exit: { code: null, signal: 9, reason: null, at: "" } })).toBe("exited(137)");
  expect(stateLabel({ state: "exited", exit: { code: null, signal: null, reason: null, at: "" } })).toBe("exited(?)");
  expect(stateLabel({ state: "stopped", exit: { code: null, signal: 9, reason: null, at: "" } })).toBe("stopped");
});

test("pod names", () => {
  for (const ok of ["web", "a", "0", "web-1.prod_x", "a".repeat(63)]) expect(POD_NAME.test(ok)).toBe(true);
  for (const bad of ["", "Web", "-a", ".a", "_a", "a/b", "a b", "a".repeat(64)]) expect(POD_NAME.test(bad)).toBe(false);
});
