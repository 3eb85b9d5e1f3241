/**
 * Which criu autopod runs: the configured one; else a good system CRIU (new enough for this kernel and built with
 * autopod's patches, at /usr/local/sbin/criu or on PATH); else the one this binary brought, once installed
 * (`autopod criu install`); else whatever system criu there is, which doctor then explains.
 */
import { readFileSync, statSync } from "node:fs";
import { criuPatchSetGitId } from "../../criu-installer.ts";
import { which } from "./exec.ts";
import { compareVersions, criuMinimumFor, parseCriuGitId, parseCriuVersion, parseVersion } from "./criu.ts";
import { DEFAULT_CRIU_PREFIX, installedEmbeddedCriu } from "./criu-embedded.ts";

export type CriuSource = "configured" | "system" | "bundled";

export interface CriuChoice {
  /** The criu to run; null when there is none. */
  path: string | null;
  source: CriuSource | null;
  /** Why this one, in a sentence (doctor prints it). */
  why: string;
}

export interface ChooseOptions {
  /** config `criu`: when set, only that path. */
  configured?: string;
  kernelRelease?: string;
  /** Where `autopod criu install` puts the carried CRIU (default /usr/local/lib/autopod/criu). */
  bundledPrefix?: string;
  /** System places to look (default /usr/local/sbin/criu, then criu on PATH). */
  systemCandidates?: string[];
}

/** `criu --version` of a binary, asked once per file (path, size, mtime, inode). */
const probes = new Map<string, { key: string; version: string | null; gitId: string | null }>();

export function probeCriuSync(path: string): { version: string | null; gitId: string | null } {
  let key = "";
  try {
    const st = statSync(path);
    key = `${st.size}:${st.mtimeMs}:${st.ino}`;
  } catch {
    return { version: null, gitId: null };
  }
  const known = probes.get(path);
  if (known && known.key === key) return known;
  const r = Bun.spawnSync([path, "--version"], { stdout: "pipe", stderr: "ignore", timeout: 10_000 });
  const out = r.exitCode === 0 ? r.stdout.toString() : "";
  const probe = { key, version: parseCriuVersion(out), gitId: parseCriuGitId(out) };
  probes.set(path, probe);
  return probe;
}

export function chooseCriu(opts: ChooseOptions = {}): CriuChoice {
  if (opts.configured) {
    let exists = false;
    try {
      exists = statSync(opts.configured).isFile();
    } catch {}
    return exists
      ? { path: opts.configured, source: "configured", why: "set by the configuration (criu)" }
      : { path: null, source: null, why: `criu not found at configured path "${opts.configured}"` };
  }
  const kernel = opts.kernelRelease ?? readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
  const { min } = criuMinimumFor(kernel);
  const expected = criuPatchSetGitId();
  const candidates = opts.systemCandidates ?? ["/usr/local/sbin/criu", which("criu") ?? ""];
  const seen = new Set<string>();
  const rejected: string[] = [];
  let firstSystem: string | null = null;
  for (const path of candidates) {
    if (!path || seen.has(path)) continue;
    seen.add(path);
    const { version, gitId } = probeCriuSync(path);
    if (!version && !gitId) {
      try {
        statSync(path);
      } catch {
        continue; // not there
      }
    }
    firstSystem ??= path;
    const v = version ? parseVersion(version) : null;
    if (!v || compareVersions(v, parseVersion(min)!) < 0) {
      rejected.push(`${path} is version ${version ?? "unknown"} (Linux ${kernel} needs >= ${min})`);
    } else if (gitId !== expected) {
      rejected.push(`${path} (${version}) lacks autopod's CRIU patches (GitID ${gitId ?? "none"})`);
    } else {
      return { path, source: "system", why: `the system's CRIU ${version} is new enough for Linux ${kernel} and carries autopod's patches` };
    }
  }
  const bundled = installedEmbeddedCriu(opts.bundledPrefix ?? DEFAULT_CRIU_PREFIX);
  if (bundled) {
    const because = rejected.length ? rejected.join("; ") : "there is no system CRIU";
    return { path: bundled, source: "bundled", why: `the CRIU autopod brought (autopod criu install), because ${because}` };
  }
  if (firstSystem) return { path: firstSystem, source: "system", why: `the only CRIU here: ${rejected.join("; ")}` };
  return { path: null, source: null, why: "no criu in /usr/local/sbin or PATH, and autopod's own is not installed" };
}

/** The criu to run, or null (checkpoint and restore ask this each time; the probe is cached per file). */
export function findCriu(configured = ""): string | null {
  return chooseCriu({ configured }).path;
}
