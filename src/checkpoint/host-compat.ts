/**
 * Can this host make or restore an image: a CRIU new enough for this kernel,
 * and, for an image, a CRIU at least as new as the one that made it and the
 * CPU features its processes may use.
 */
import { PreconditionError } from "../errors.ts";
import type { CheckpointHost } from "../platform/checkpoint-host.ts";
import { compareVersions, criuMinimumFor, parseVersion } from "../platform/linux/criu.ts";
import type { Manifest } from "../image/manifest.ts";

/** The CRIU binary, checked against this kernel. */
export async function requireCriu(host: CheckpointHost, configured: string): Promise<{ path: string; version: string }> {
  const path = host.findCriu(configured);
  if (!path) throw new PreconditionError("CRIU is not installed: run `autopod doctor` for how to install it");
  const version = await host.criuVersion(path);
  const kernel = host.kernelRelease();
  const { min, why } = criuMinimumFor(kernel);
  const v = version ? parseVersion(version) : null;
  if (!v || compareVersions(v, parseVersion(min)!) < 0) {
    throw new PreconditionError(`CRIU ${version ?? "(unknown version)"} at ${path} is too old for Linux ${kernel}: it needs >= ${min}, because ${why}`);
  }
  return { path, version: version! };
}

/** Refuse, before touching anything, an image this host cannot run. */
export function checkHost(host: CheckpointHost, m: Manifest, criuVersion: string): void {
  const why = whyHostCannotRestore(m, criuVersion, host.cpuFlags());
  if (why) throw new PreconditionError(why);
}

/** Why this host cannot restore an image (CRIU too old for it, CPU features missing), or null. */
export function whyHostCannotRestore(m: Pick<Manifest, "criuVersion" | "cpuFlags">, criuVersion: string, hostFlags: readonly string[]): string | null {
  const have = parseVersion(criuVersion);
  const made = m.criuVersion ? parseVersion(m.criuVersion) : null;
  if (have && made && compareVersions(have, made) < 0) {
    return `The image was made by CRIU ${m.criuVersion}; this host has CRIU ${criuVersion}, which may not read it: upgrade CRIU here`;
  }
  const host = new Set(hostFlags);
  const missing = m.cpuFlags.filter((f) => !host.has(f) && RELEVANT_CPU_FLAGS.has(f));
  if (missing.length) return `This host's CPU lacks features the image's processes may use: ${missing.join(", ")}; restore it on a host that has them`;
  return null;
}

/** CPU features a restored process may have chosen code paths by (glibc's hwcaps and friends). */
const RELEVANT_CPU_FLAGS = new Set([
  "sse4_1",
  "sse4_2",
  "avx",
  "avx2",
  "avx512f",
  "avx512bw",
  "avx512cd",
  "avx512dq",
  "avx512vl",
  "bmi1",
  "bmi2",
  "fma",
  "aes",
  "sha_ni",
  "adx",
  "movbe",
  "popcnt",
  "xsave",
  "rdrand",
  "rdseed",
  "erms",
  "fsrm",
]);
