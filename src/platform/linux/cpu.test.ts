import { expect, test } from "bun:test";
import { cpuFlags } from "./cpu.ts";

test("cpuFlags reads /proc/cpuinfo's flags line", () => {
  expect(cpuFlags("processor\t: 0\nflags\t\t: fpu sse4_2 avx2\nbugs\t\t: spectre_v1\n")).toEqual(["avx2", "fpu", "sse4_2"]);
  expect(cpuFlags("")).toEqual([]);
  expect(cpuFlags().length).toBeGreaterThan(0);
});
