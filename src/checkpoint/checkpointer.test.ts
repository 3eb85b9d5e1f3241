import { expect, test } from "bun:test";
import { checkSharedVolume, cpuFlags, whyHostCannotRestore } from "./checkpointer.ts";
import { mkdtempSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";

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

test("cpuFlags reads /proc/cpuinfo's flags line", () => {
  expect(cpuFlags("processor\t: 0\nflags\t\t: fpu sse4_2 avx2\nbugs\t\t: spectre_v1\n")).toEqual(["avx2", "fpu", "sse4_2"]);
  expect(cpuFlags("")).toEqual([]);
  expect(cpuFlags().length).toBeGreaterThan(0);
});

test("an image from another host may name only a real, non-system directory as shared storage", () => {
  const dir = mkdtempSync(`${tmpdir()}/shared-`);
  expect(() => checkSharedVolume(dir, "/var/lib/autopod")).not.toThrow();
  symlinkSync("/etc", `${dir}/link-to-etc`);
  // Other spellings of system directories (issue 16 row 3): each was mounted read-write before.
  for (const bad of [
    "/",
    "/.",
    "//",
    "/etc",
    "/etc/",
    "//etc",
    "/./etc",
    "/etc/cron.d",
    "/srv/../etc",
    `${dir}/link-to-etc`,
    `${dir}/link-to-etc/cron.d`,
    "/usr",
    "/lib",
    "/var/lib",
    "/var/spool/cron",
    "/var/lib/autopod",
    "/var/lib/autopod/store",
    "/var",
  ]) {
    expect(() => checkSharedVolume(bad, "/var/lib/autopod")).toThrow("will not give a pod that host directory");
  }
  expect(() => checkSharedVolume("etc", "/var/lib/autopod")).toThrow("not an absolute path");
  expect(() => checkSharedVolume(`${dir}/missing`, "/var/lib/autopod")).toThrow("is not a directory on this host");
});
