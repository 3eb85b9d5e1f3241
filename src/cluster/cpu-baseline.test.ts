import { expect, test } from "bun:test";
import { commonFlags, GLIBC_HWCAPS, planFor, withHiddenHwcaps } from "./cpu-baseline.ts";

test("commonFlags is what every member has", () => {
  expect(
    commonFlags([
      ["fpu", "avx2", "avx512f", "sse4_2"],
      ["sse4_2", "avx2", "fpu"],
      ["avx2", "fpu", "sse4_2", "sha_ni"],
    ]),
  ).toEqual(["avx2", "fpu", "sse4_2"]);
  expect(commonFlags([["b", "a", "a"]])).toEqual(["a", "b"]);
  expect(commonFlags([])).toEqual([]);
});

test("planFor hides from glibc what this host has and the baseline lacks, and keeps the rest usable", () => {
  const host = ["abm", "avx2", "avx512bw", "avx512f", "fpu", "sha_ni", "sse4_2"];
  // sha_ni: glibc cannot hide it, so the pod may use it (and its images need it).
  expect(planFor(host, ["fpu", "sse4_2"])).toEqual({ hidden: ["AVX2", "AVX512BW", "AVX512F", "LZCNT"], features: ["fpu", "sha_ni", "sse4_2"] });
  expect(planFor(host, host)).toEqual({ hidden: [], features: host });
  // What the host lacks itself it never offers: nothing to hide.
  expect(planFor(["fpu"], ["fpu", "avx2"])).toEqual({ hidden: [], features: ["fpu"] });
});

test("every glibc name is one glibc 2.36's hwcaps tunable turns off", () => {
  // sysdeps/x86/cpu-tunables.c: names are matched by length and case.
  for (const name of Object.values(GLIBC_HWCAPS)) expect(name).toMatch(/^[A-Z0-9_]{3,8}$/);
});

test("withHiddenHwcaps adds to the user's GLIBC_TUNABLES, after their own hwcaps", () => {
  expect(withHiddenHwcaps(undefined, [])).toBeUndefined();
  expect(withHiddenHwcaps("glibc.malloc.check=3", [])).toBe("glibc.malloc.check=3");
  expect(withHiddenHwcaps(undefined, ["AVX2", "AVX512F"])).toBe("glibc.cpu.hwcaps=-AVX2,-AVX512F");
  expect(withHiddenHwcaps("glibc.malloc.check=3", ["AVX2"])).toBe("glibc.malloc.check=3:glibc.cpu.hwcaps=-AVX2");
  expect(withHiddenHwcaps("glibc.cpu.hwcaps=-ERMS:glibc.malloc.check=3", ["AVX2"])).toBe("glibc.cpu.hwcaps=-ERMS,-AVX2:glibc.malloc.check=3");
  expect(withHiddenHwcaps("glibc.cpu.hwcaps=", ["AVX2"])).toBe("glibc.cpu.hwcaps=-AVX2");
});
