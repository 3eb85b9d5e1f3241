/**
 * Which package owns a file: `dpkg-query -S` (Debian, Ubuntu), in one call
 * for all the files, so a replaced file can be named with the package whose
 * upgrade replaced it. (rpm hosts: not yet; `rpm -qf` prints one line per
 * owner, not per file, and needs its own parser.)
 */
import type { CheckOptions } from "./checker.ts";
import { inRoot } from "./host-paths.ts";
import type { PackageManager } from "./package-manager.ts";

/** "pkg: /path" and "pkg1, pkg2: /path" lines of `dpkg-query -S`; diversion lines are skipped. Pure. */
export function parseDpkgQueryS(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (line.startsWith("diversion ")) continue;
    const sep = line.indexOf(": /");
    if (sep <= 0) continue;
    // "libpython3.11-stdlib:amd64" -> "libpython3.11-stdlib"; several owners stay a list.
    const owners = line
      .slice(0, sep)
      .split(", ")
      .map((p) => p.replace(/:[\w-]+$/, ""));
    out.set(line.slice(sep + 2), [...new Set(owners)].join(", "));
  }
  return out;
}

/** Merged /usr: dpkg may list a file under /lib while processes see it under /usr/lib, and the other way round. Pure. */
export function mergedUsrAlias(path: string): string | null {
  const m = /^\/usr\/(lib|lib32|lib64|libx32|bin|sbin)\//.exec(path);
  if (m) return path.slice(4);
  return /^\/(lib|lib32|lib64|libx32|bin|sbin)\//.test(path) ? `/usr${path}` : null;
}

/** Glob characters: dpkg-query -S takes patterns, and a path from a process must not become one. */
const GLOB = /[*?[\]\\\n]/;

/** The owning package of each file that has one, by path. Files no package owns are left out; a failed query gives an empty map. */
export async function findFileOwners(manager: PackageManager | null, files: readonly string[], opts: CheckOptions): Promise<Map<string, string>> {
  const wanted = [...new Set(files)].filter((f) => f.startsWith("/") && !GLOB.test(f));
  const out = new Map<string, string>();
  if (wanted.length === 0) return out;
  if (manager === "apt") {
    const dpkgQuery = opts.which("dpkg-query");
    if (!dpkgQuery) return out;
    const aliases = wanted.map(mergedUsrAlias).filter((a): a is string => a !== null && !GLOB.test(a));
    const r = await opts.run([dpkgQuery, `--admindir=${inRoot(opts.paths, "var/lib/dpkg")}`, "-S", ...wanted, ...aliases], {
      timeoutMs: opts.commandTimeoutMs,
      env: { ...process.env, LC_ALL: "C" },
    });
    if (r.timedOut) return out;
    const found = parseDpkgQueryS(r.stdout);
    for (const f of wanted) {
      const owner = found.get(f) ?? found.get(mergedUsrAlias(f) ?? "");
      if (owner) out.set(f, owner);
    }
  }
  return out;
}
