/**
 * Can this host make or restore an image: a CRIU new enough for this kernel,
 * and, for an image, a CRIU at least as new as the one that made it and the
 * CPU features its processes may use.
 */
import { PreconditionError } from "../errors.ts";
import type { CheckpointHost } from "../platform/checkpoint-host.ts";
import { compareVersions, criuMinimumFor, parseVersion } from "../platform/linux/criu.ts";
import type { Manifest } from "../image/manifest.ts";
import { RELEVANT_CPU_FLAGS } from "../cluster/cpu-baseline.ts";
import { TMPFS_TAR } from "./criu-image/tmpfs-tar.ts";

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

/** This host's CPU lacks features an image's processes may use: restoring it could end them with SIGILL. */
export class MissingCpuFeaturesError extends PreconditionError {
  override name = "MissingCpuFeaturesError";
  constructor(readonly missing: string[]) {
    super(`This host's CPU lacks features the image's processes may use: ${missing.join(", ")}; restore it on a host that has them`);
  }
}

/** Refuse, before touching anything, an image this host cannot run. */
export function checkHost(host: CheckpointHost, m: Manifest, criuVersion: string): void {
  const missing = missingCpuFeatures(m.cpuFlags, host.cpuFlags());
  if (missing.length) throw new MissingCpuFeaturesError(missing);
  const why = whyHostCannotRestore(m, criuVersion, host.cpuFlags());
  if (why) throw new PreconditionError(why);
}

/** The features code may have been chosen by that an image's processes may use and this host lacks, sorted (not in /proc/cpuinfo's order, which differs between CPUs). */
export function missingCpuFeatures(imageFlags: readonly string[], hostFlags: readonly string[]): string[] {
  const host = new Set(hostFlags);
  return imageFlags.filter((f) => !host.has(f) && RELEVANT_CPU_FLAGS.has(f)).sort();
}

/** Why this host cannot restore an image (CRIU too old for it, CPU features missing), or null. */
export function whyHostCannotRestore(m: Pick<Manifest, "criuVersion" | "cpuFlags">, criuVersion: string, hostFlags: readonly string[]): string | null {
  const have = parseVersion(criuVersion);
  const made = m.criuVersion ? parseVersion(m.criuVersion) : null;
  if (have && made && compareVersions(have, made) < 0) {
    return `The image was made by CRIU ${m.criuVersion}; this host has CRIU ${criuVersion}, which may not read it: upgrade CRIU here`;
  }
  const missing = missingCpuFeatures(m.cpuFlags, hostFlags);
  if (missing.length) return `This host's CPU lacks features the image's processes may use: ${missing.join(", ")}; restore it on a host that has them`;
  return null;
}

/** Programs CRIU runs to restore an image, with the Debian package of each: tar and gzip unpack its tmpfs mounts (the pod's /dev). */
export function programsToRestore(m: Pick<Manifest, "criu">): Array<{ name: string; pkg: string }> {
  const hasTmpfs = m.criu.some((e) => TMPFS_TAR.test(e.path.split("/").pop() ?? ""));
  return hasTmpfs
    ? [
        { name: "tar", pkg: "tar" },
        { name: "gzip", pkg: "gzip" },
      ]
    : [];
}

/**
 * Refuse, before anything changes, an image this host's kernel or programs cannot restore: a kernel
 * without nftables (the network lock), a missing program CRIU runs. Met restoring on other kernels and
 * bare roots, where these failed only halfway through, after the pod's network was made.
 */
export async function checkHostFacilities(
  host: CheckpointHost,
  m: Pick<Manifest, "criu">,
  /** host.whyNoNftables() asked earlier, so its answer comes while other checks go on. */
  nftables: Promise<string | null> = host.whyNoNftables(),
): Promise<void> {
  const missing = programsToRestore(m).filter((p) => host.findProgram(p.name) === null);
  if (missing.length) {
    const names = missing.map((p) => `"${p.name}"`).join(" and ");
    const pkgs = [...new Set(missing.map((p) => p.pkg))].join(" ");
    throw new PreconditionError(
      `This host has no ${names}, which CRIU runs to restore the image's tmpfs mounts: install it (apt-get install ${pkgs}) and restore again`,
    );
  }
  const why = await nftables;
  if (why) throw new PreconditionError(`This host cannot restore the pod: ${why}`);
}
