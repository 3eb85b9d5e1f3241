import { expect, test } from "bun:test";
import { whyHostCannotRestore } from "./host-compat.ts";

test("a host with an older CRIU, or without a CPU feature the image's processes may use, is refused", () => {
  const m = { criuVersion: "4.2.1", cpuFlags: ["avx2", "avx512f", "fpu", "sse4_2"] };
  expect(whyHostCannotRestore(m, "4.2.1", ["avx2", "avx512f", "sse4_2"])).toBeNull();
  expect(whyHostCannotRestore(m, "4.3", ["avx2", "avx512f", "sse4_2"])).toBeNull();
  expect(whyHostCannotRestore(m, "4.1.1", ["avx2", "avx512f", "sse4_2"])).toContain("made by CRIU 4.2.1; this host has CRIU 4.1.1");
  // fpu is not a flag code paths are chosen by: its absence does not matter.
  expect(whyHostCannotRestore(m, "4.2.1", ["avx2", "sse4_2"])).toBe(
    "This host's CPU lacks features the image's processes may use: avx512f; restore it on a host that has them",
  );
});
