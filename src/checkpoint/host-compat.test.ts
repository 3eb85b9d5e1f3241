import { expect, test } from "bun:test";
import { PreconditionError } from "../errors.ts";
import type { Manifest } from "../image/manifest.ts";
import type { CheckpointHost } from "../platform/checkpoint-host.ts";
import { checkHost, MissingCpuFeaturesError, programsToRestore, whyHostCannotRestore } from "./host-compat.ts";

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

test("missing CPU features refuse with a domain error naming them; speed-only flags do not", () => {
  const host = fakeHost(["avx", "erms", "fpu", "sse4_2"]);
  const m = { criuVersion: "4.2.1", cpuFlags: ["avx", "avx2", "fma", "erms", "fsrm", "fpu", "sse4_2"] } as unknown as Manifest;
  let err: unknown;
  try {
    checkHost(host, m, "4.2.1");
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(MissingCpuFeaturesError);
  expect(err).toBeInstanceOf(PreconditionError);
  expect((err as MissingCpuFeaturesError).missing).toEqual(["avx2", "fma"]);
  expect((err as Error).message).toBe("This host's CPU lacks features the image's processes may use: avx2, fma; restore it on a host that has them");
  expect(() => checkHost(fakeHost(["avx", "avx2", "fma", "fpu", "sse4_2"]), m, "4.2.1")).not.toThrow();
});

test("an image with a tmpfs mount needs tar and gzip to restore; one without needs neither", () => {
  const entry = (path: string) => ({ path }) as Manifest["criu"][number];
  const withTmpfs = { criu: [entry("."), entry("core-1.img"), entry("tmpfs-dev-43.tar.gz.img")] };
  expect(programsToRestore(withTmpfs).map((p) => p.name)).toEqual(["tar", "gzip"]);
  expect(programsToRestore({ criu: [entry("core-1.img"), entry("tmpfs-dev-43.tar.gz.img.bak")] })).toEqual([]);
});

function fakeHost(flags: string[]): CheckpointHost {
  return { cpuFlags: () => flags } as unknown as CheckpointHost;
}
