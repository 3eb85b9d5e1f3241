import { statSync } from "node:fs";
import { run } from "./exec.ts";

/** A dotted version as numbers: "4.2.1" -> [4, 2, 1]. */
export type Version = number[];

export function parseVersion(s: string): Version | null {
  const m = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(s.trim());
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : null;
}

export function compareVersions(a: Version, b: Version): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  return 0;
}

/** `criu --version` prints "Version: 4.2.1" (and a GitID line on git builds). */
export function parseCriuVersion(stdout: string): string | null {
  const m = /^Version:\s*(\S+)/m.exec(stdout);
  return m ? m[1]! : null;
}

/** `criu --version` of a build with autopod's patches also prints "GitID: autopod-<patch set>"; null when it prints none. */
export function parseCriuGitId(stdout: string): string | null {
  const m = /^GitID:\s*(\S+)/m.exec(stdout);
  return m ? m[1]! : null;
}

/** The GitID `criu --version` prints (null for none, or when it cannot run). */
export async function criuGitId(path: string): Promise<string | null> {
  const r = await run([path, "--version"], { timeoutMs: 10_000 }).catch(() => null);
  return r?.exitCode === 0 ? parseCriuGitId(r.stdout) : null;
}

/**
 * The oldest CRIU that works on a kernel, and why. Linux >= 6.16 rejects
 * SO_PASSCRED on TCP sockets as CRIU < 4.2 dumps them; Linux >= 6.13 added
 * the vvar_vclock vDSO mapping that CRIU < 4.1 cannot handle.
 */
export function criuMinimumFor(kernelRelease: string): { min: string; why: string } {
  const k = parseVersion(kernelRelease) ?? [0, 0, 0];
  if (compareVersions(k, [6, 16]) >= 0) {
    return { min: "4.2", why: "Linux >= 6.16 refuses SO_PASSCRED on TCP sockets, which CRIU < 4.2 reads when dumping them" };
  }
  if (compareVersions(k, [6, 13]) >= 0) {
    return { min: "4.1", why: "Linux >= 6.13 maps vvar_vclock in the vDSO area, which CRIU < 4.1 cannot dump" };
  }
  return { min: "3.15", why: "older CRIU lacks features autopod uses (nftables network lock)" };
}

const versions = new Map<string, { key: string; version: string }>();

/** `criu --version`, asked once per binary (by path, size and mtime): every checkpoint and restore checks it. */
export async function criuVersion(path: string): Promise<string | null> {
  let key = "";
  try {
    const st = statSync(path);
    key = `${st.size}:${st.mtimeMs}:${st.ino}`;
  } catch {
    // asked anyway, for the error
  }
  const known = versions.get(path);
  if (known !== undefined && key !== "" && known.key === key) return known.version;
  const r = await run([path, "--version"], { timeoutMs: 10_000 });
  const version = r.exitCode === 0 ? parseCriuVersion(r.stdout) : null;
  if (version !== null && key !== "") versions.set(path, { key, version });
  return version;
}
