/**
 * The apt check's last answer, kept on disk and reused while nothing it
 * depends on has changed: `apt-get --simulate dist-upgrade` costs seconds
 * (it rebuilds apt's cache from the lists every run where the pkgcache is
 * disabled), the fingerprint a millisecond.
 *
 * The fingerprint covers every input of apt's answer, by path, size, inode,
 * mtime and ctime (nanoseconds): the dpkg database (status, updates/, arch),
 * the lists, apt's configuration (/etc/apt, recursively, and $APT_CONFIG),
 * extended_states, the apt-get binary, and this program's version (a newer
 * autopod may classify differently). A package manager rewrites these files
 * by renaming new ones over them, so any change gives a new inode and ctime.
 *
 * The file is written atomically (temporary file, rename), readable by root
 * only, and validated when read back: a cache that does not parse, or whose
 * key differs, is ignored, never trusted.
 */
import { chmod, mkdir, readdir, readFile, rename, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { COMMIT, VERSION } from "../version.ts";
import type { CheckResult } from "./checker.ts";
import { type HostPaths, inRoot } from "./host-paths.ts";
import { ReasonSchema } from "./report-schema.ts";

/** Bump when the cached result's meaning changes without a version change. */
const FORMAT = 1;
const FILE = "apt-check.json";

/** Lines "path size inode mtime ctime" (or "path -" when absent) of every input of the apt check. */
export async function aptInputs(paths: HostPaths, aptGet: string): Promise<string[]> {
  const lines: string[] = [];
  const one = async (path: string) => {
    const st = await stat(path, { bigint: true }).catch(() => null);
    lines.push(st ? `${path} ${st.size} ${st.ino} ${st.mtimeNs} ${st.ctimeNs}` : `${path} -`);
  };
  const tree = async (dir: string, recursive: boolean, skip: ReadonlySet<string> = new Set()) => {
    await one(dir);
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      if (skip.has(e.name)) continue;
      if (e.isDirectory()) {
        if (recursive) await tree(join(dir, e.name), true);
      } else await one(join(dir, e.name));
    }
  };
  for (const f of ["var/lib/dpkg/status", "var/lib/dpkg/arch", "var/lib/apt/extended_states"]) await one(inRoot(paths, f));
  await tree(inRoot(paths, "var/lib/dpkg/updates"), false);
  // The lock and the download area change without the lists changing.
  await tree(inRoot(paths, "var/lib/apt/lists"), false, new Set(["lock", "partial", "auxfiles"]));
  await tree(inRoot(paths, "etc/apt"), true);
  if (paths.root !== "/") await tree("/etc/apt", true); // apt-get reads the host's configuration before Dir= moves it
  if (process.env.APT_CONFIG) await one(process.env.APT_CONFIG);
  await one(aptGet);
  return lines;
}

/** The cache key: a hash of the inputs, the root, the program's version and the cache format. */
export async function aptCacheKey(paths: HostPaths, aptGet: string): Promise<string> {
  const text = [
    `format ${FORMAT}`,
    `autopod ${VERSION} ${COMMIT}`,
    `root ${paths.root}`,
    `APT_CONFIG ${process.env.APT_CONFIG ?? ""}`,
    ...(await aptInputs(paths, aptGet)),
  ].join("\n");
  return new Bun.CryptoHasher("sha256").update(text).digest("hex");
}

const CachedSchema = z
  .object({
    format: z.literal(FORMAT),
    key: z.string().regex(/^[0-9a-f]{64}$/),
    checked_at: z.iso.datetime(),
    result: z
      .object({
        verdict: z.enum(["ok", "update_available", "security_update_available"]),
        summary: z.string(),
        reasons: z.array(ReasonSchema),
      })
      .strict(),
  })
  .strict();

export type CachedAptResult = z.infer<typeof CachedSchema>;

/** The cached result when its key is this one; null when there is none, it is another key's, or it does not parse. */
export async function readAptCache(dir: string, key: string): Promise<CachedAptResult | null> {
  try {
    const cached = CachedSchema.parse(JSON.parse(await readFile(join(dir, FILE), "utf8")));
    return cached.key === key ? cached : null;
  } catch {
    return null;
  }
}

/** Keep a result for its key. Only definite verdicts are kept (an error is worth retrying). Best effort: a cache that cannot be written is no cache. */
export async function writeAptCache(dir: string, key: string, result: CheckResult, checkedAt: Date): Promise<boolean> {
  if (result.verdict !== "ok" && result.verdict !== "update_available" && result.verdict !== "security_update_available") return false;
  const body: CachedAptResult = {
    format: FORMAT,
    key,
    checked_at: checkedAt.toISOString(),
    result: { verdict: result.verdict, summary: result.summary, reasons: result.reasons },
  };
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const tmp = join(dir, `.${FILE}.${process.pid}.tmp`);
    await writeFile(tmp, JSON.stringify(body), { mode: 0o600 });
    await chmod(tmp, 0o600);
    await rename(tmp, join(dir, FILE));
    return true;
  } catch {
    return false;
  }
}
