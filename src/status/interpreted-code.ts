/**
 * Interpreters running replaced source: a Python, Perl or Ruby process whose
 * script or modules were replaced or deleted after it started. Their code is
 * read, not mapped, so /proc/PID/maps does not show it (needrestart's
 * interpreter plugins look for the same).
 *
 * The source files of a process: the script its command line names (resolved
 * in its working directory and root), the modules that script imports,
 * followed recursively through the interpreter's module path (Python and
 * Perl; the import statements are read with a pattern, as needrestart does),
 * and the source files it holds open. The module path is derived from the
 * interpreter's location and the process's PYTHONPATH / PERL5LIB, never by
 * running anything.
 *
 * A file counts as replaced when its inode changed after the process started
 * (its ctime is later: dpkg writes the new file beside the old and renames it
 * over, which gives a new inode; dpkg keeps the package's mtime, so mtime
 * proves nothing), and as deleted when an open source file is unlinked.
 */
import { readdir, readFile, readlink, stat } from "node:fs/promises";
import { dirname, isAbsolute, join, normalize } from "node:path";

export type InterpreterName = "python" | "perl" | "ruby";

interface InterpreterSpec {
  name: InterpreterName;
  exe: RegExp;
  /** Options that take the next argument (or the rest of the same one). */
  withArgument: string;
  /** Options after which there is no script file (code on the command line). */
  inlineCode: string;
  /** Source file extensions, for open files. */
  extensions: RegExp;
}

const SPECS: readonly InterpreterSpec[] = [
  { name: "python", exe: /^python[23]?(\.\d+)?d?m?$/, withArgument: "mWXQ", inlineCode: "c", extensions: /\.py$/ },
  { name: "perl", exe: /^perl(5[\d.]*)?$/, withArgument: "IMmxCd", inlineCode: "eE", extensions: /\.(pl|pm)$/ },
  { name: "ruby", exe: /^ruby[\d.]*$/, withArgument: "IrCEWx", inlineCode: "e", extensions: /\.rb$/ },
];

/** Which interpreter an executable is, by its file name; null for anything else. */
export function interpreterOf(exe: string): InterpreterName | null {
  const base =
    exe
      .replace(/ \(deleted\)$/, "")
      .split("/")
      .pop() ?? "";
  return SPECS.find((s) => s.exe.test(base))?.name ?? null;
}

/** Source file extensions of an interpreter (for the files it holds open). */
export function isSourceFile(interp: InterpreterName, path: string): boolean {
  return SPECS.find((s) => s.name === interp)!.extensions.test(path);
}

/** What the command line runs: a script file, a Python module (-m), or nothing (-c, -e, an interactive shell). Pure. */
export function commandTarget(interp: InterpreterName, argv: readonly string[]): { script: string } | { module: string } | null {
  const spec = SPECS.find((s) => s.name === interp)!;
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") return argv[i + 1] ? { script: argv[i + 1]! } : null;
    if (a === "-" || !a.startsWith("-")) return a === "-" ? null : { script: a };
    if (a.startsWith("--")) continue; // long options take no argument here (--version, --help end the run anyway)
    // A cluster of single-letter options: "-uB", "-W ignore", "-Wignore", "-m mod", "-mmod".
    for (let j = 1; j < a.length; j++) {
      const o = a[j]!;
      if (spec.inlineCode.includes(o)) return null;
      if (spec.withArgument.includes(o)) {
        const value = j + 1 < a.length ? a.slice(j + 1) : argv[++i];
        if (interp === "python" && o === "m") return value ? { module: value } : null;
        break;
      }
    }
  }
  return null;
}

/** "import a, b as c" (group 1) or "from a import b, c" (groups 2 and 3), at the start of a line; a comment ends it. */
const PYTHON_IMPORT = /^[ \t]*(?:import[ \t]+([^\n#]+)|from[ \t]+([\w.]+)[ \t]+import[ \t]+\(?([^\n#]*))/gm;

/** The modules a source file imports, by pattern (comments and strings are not parsed, as needrestart does not). Pure. */
export function importedModules(interp: InterpreterName, source: string): string[] {
  const out = new Set<string>();
  if (interp === "python") {
    // One pass of one pattern over the whole text: the standard library a service imports is megabytes.
    for (const m of source.matchAll(PYTHON_IMPORT)) {
      if (m[1] !== undefined) {
        for (const part of m[1].split(",")) {
          const name = part.trim().split(/\s+/)[0];
          if (name && /^[\w.]+$/.test(name)) out.add(name);
        }
        continue;
      }
      const base = m[2]!;
      out.add(base);
      // "from pkg import sub": sub may be a module of the package.
      for (const part of m[3]!.split(",")) {
        const name = part
          .trim()
          .replace(/[()\\]/g, "")
          .split(/\s+/)[0];
        if (name && /^\w+$/.test(name)) out.add(base.endsWith(".") ? `${base}${name}` : `${base}.${name}`);
      }
    }
  } else if (interp === "perl") {
    for (const m of source.matchAll(/^\s*(?:use|require)\s+([A-Za-z_][\w]*(?:::\w+)*)/gm)) out.add(m[1]!);
  }
  return [...out];
}

/** The files a module name may be, relative to one directory of the module path ("a.b" -> a/b.py, a/b/__init__.py). Pure. */
export function moduleFileNames(interp: InterpreterName, module: string): string[] {
  if (interp === "python") {
    const rel = module.replace(/\./g, "/");
    return [`${rel}.py`, `${rel}/__init__.py`];
  }
  if (interp === "perl") return [`${module.replace(/::/g, "/")}.pm`];
  return [];
}

/** A Python relative import ("..a.b" seen from a file in dir) as a path below that file's package; null when absolute. Pure. */
export function relativeImportBase(module: string, fileDir: string): { dir: string; rest: string } | null {
  const dots = /^\.+/.exec(module)?.[0].length ?? 0;
  if (dots === 0) return null;
  let dir = fileDir;
  for (let i = 1; i < dots; i++) dir = dirname(dir);
  return { dir, rest: module.slice(dots) };
}

/**
 * Where the interpreter looks for modules, in the process's root: the
 * script's directory, PYTHONPATH / PERL5LIB, then the directories of its
 * installation (prefix = two levels above the executable). Pure.
 */
export function modulePath(interp: InterpreterName, exe: string, environ: Record<string, string>, scriptDir: string | null): string[] {
  const prefix = dirname(dirname(exe));
  const base = exe.split("/").pop() ?? "";
  const out: string[] = [];
  if (interp === "python") {
    if (scriptDir) out.push(scriptDir);
    for (const p of (environ.PYTHONPATH ?? "").split(":")) if (isAbsolute(p)) out.push(p);
    const v = /^python(\d+\.\d+)/.exec(base)?.[1];
    const lib = join(prefix, "lib");
    if (v) {
      out.push(join(lib, `python${v}`), join(lib, `python${v}`, "site-packages"), join(lib, `python${v}`, "dist-packages"));
      if (prefix === "/usr") out.push(`/usr/local/lib/python${v}/dist-packages`);
    }
    out.push(join(lib, "python3", "dist-packages"));
  } else if (interp === "perl") {
    for (const p of (environ.PERL5LIB ?? environ.PERLLIB ?? "").split(":")) if (isAbsolute(p)) out.push(p);
    if (prefix === "/usr") out.push("/etc/perl", "/usr/local/share/perl5", "/usr/share/perl5");
    // Versioned directories (/usr/share/perl/5.36, /usr/lib/x86_64-linux-gnu/perl/5.36, perl-base) are added by the caller, which can list them.
    if (scriptDir) out.push(scriptDir);
  }
  return [...new Set(out.map((p) => normalize(p)))];
}

/** The process's environment (/proc/PID/environ, NUL-separated). Pure. */
export function parseEnviron(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of text.split("\0")) {
    const eq = kv.indexOf("=");
    if (eq > 0) out[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return out;
}

/** When the process started, in seconds since the epoch: /proc/PID/stat's starttime (ticks since boot) plus the boot time. Pure. */
export function processStartSeconds(statText: string, bootTimeSeconds: number, clockTicks = 100): number | null {
  const fields = statText.slice(statText.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[22 - 3]);
  return Number.isFinite(ticks) ? bootTimeSeconds + ticks / clockTicks : null;
}

/**
 * When the system booted, in seconds since the epoch, to 10 ms: now less
 * /proc/uptime. (/proc/stat's btime is whole seconds: a script written just
 * before its process started could then look replaced after it.) Pure.
 */
export function bootTimeFromUptime(uptime: string, nowMs: number): number | null {
  const up = Number(uptime.trim().split(/\s+/)[0]);
  return uptime.trim() !== "" && Number.isFinite(up) ? nowMs / 1000 - up : null;
}

// ---- reading a live process (IO) ----

/** A path of a process's file system, under /proc/PID/root; ".." cannot climb out of it. */
export function inProcessRoot(rootDir: string, path: string): string {
  return join(rootDir, normalize(`/${path}`));
}

/** Reads shared by every process of one scan: a file's imports, its ctime and directory listings, by root and path. */
export interface ScanCache {
  imports: Map<string, Promise<string[] | null>>;
  ctimes: Map<string, Promise<number | null>>;
  listings: Map<string, Promise<ReadonlySet<string>>>;
}

export function newScanCache(): ScanCache {
  return { imports: new Map(), ctimes: new Map(), listings: new Map() };
}

/** Follow at most this many source files per process, and read none larger than this. */
const MAX_FILES = 3000;
const MAX_SOURCE_BYTES = 2 * 1024 * 1024;
const START_SLACK_SECONDS = 0.05;

export interface InterpreterProcess {
  /** /proc/PID */
  dir: string;
  interp: InterpreterName;
  /** /proc/PID/exe's target. */
  exe: string;
  /** Seconds since the epoch. */
  startedAt: number;
  /** Distinguishes processes that see different file systems (mount namespace and root). */
  rootKey: string;
  /** Whether to follow imports: only in our own file system, where a link cannot point a read somewhere it should not. */
  followImports: boolean;
}

/** The source files of an interpreter process that were replaced after it started, or that it holds open deleted. */
export async function replacedSources(p: InterpreterProcess, cache: ScanCache): Promise<Array<{ path: string; change: "deleted" | "replaced" }>> {
  const rootDir = join(p.dir, "root");
  const out = new Map<string, "deleted" | "replaced">();
  const ctimeOf = (path: string): Promise<number | null> => {
    const key = `${p.rootKey}\0${path}`;
    let v = cache.ctimes.get(key);
    if (!v) {
      v = stat(inProcessRoot(rootDir, path)).then(
        (st) => (st.isFile() ? st.ctimeMs / 1000 : null),
        () => null,
      );
      cache.ctimes.set(key, v);
    }
    return v;
  };
  // A file changed after the process started, with slack for the start time's resolution (a clock tick, and /proc/uptime's 10 ms).
  const isNewer = (ctime: number | null) => ctime !== null && ctime > p.startedAt + START_SLACK_SECONDS;

  // Open source files: deleted, or replaced at their path.
  const fds = await readdir(join(p.dir, "fd")).catch(() => [] as string[]);
  for (const fd of fds) {
    const target = await readlink(join(p.dir, "fd", fd)).catch(() => null);
    if (!target?.startsWith("/")) continue;
    const deleted = target.endsWith(" (deleted)");
    const path = deleted ? target.slice(0, -" (deleted)".length) : target;
    if (!isSourceFile(p.interp, path)) continue;
    if (deleted) out.set(path, "deleted");
    else {
      const [open, now] = await Promise.all([stat(join(p.dir, "fd", fd)).catch(() => null), stat(inProcessRoot(rootDir, path)).catch(() => null)]);
      if (open && now && open.dev === now.dev && open.ino !== now.ino) out.set(path, "replaced");
    }
  }

  const cmdline = (await readFile(join(p.dir, "cmdline"), "utf8").catch(() => "")).split("\0").filter((a, i, all) => a !== "" || i < all.length - 1);
  const target = commandTarget(p.interp, cmdline);
  if (!target) return [...out].map(([path, change]) => ({ path, change }));
  const cwd = await readlink(join(p.dir, "cwd")).catch(() => null);
  const environ = parseEnviron(await readFile(join(p.dir, "environ"), "utf8").catch(() => ""));
  let start: string | null = null;
  if ("script" in target) {
    if (isAbsolute(target.script)) start = normalize(target.script);
    else if (cwd?.startsWith("/")) start = join(cwd, target.script);
    if (start !== null) {
      const ctime = await ctimeOf(start);
      if (ctime === null) {
        // A script named by absolute path that is gone was deleted; a relative one may only look gone after a chdir.
        if (isAbsolute(target.script) && !out.has(start)) out.set(start, "deleted");
      } else if (isNewer(ctime)) out.set(start, "replaced");
    }
  }
  if (!p.followImports) return [...out].map(([path, change]) => ({ path, change }));

  const path = modulePath(p.interp, p.exe, environ, start ? dirname(start) : cwd);
  if (p.interp === "perl") path.push(...(await perlVersionedDirs(rootDir)));
  // Whether a file exists, by directory listings (each read once per scan, as Python's path finder does):
  // a module is looked for in every directory of the path, and most are not there.
  const listing = (d: string): Promise<ReadonlySet<string>> => {
    const key = `${p.rootKey}\0${d}`;
    let v = cache.listings.get(key);
    if (!v) {
      v = (async () => {
        // A directory is listed only when its parent's listing has it: no failed readdir per missing package.
        if (d !== "/" && !(await listing(dirname(d))).has(d.slice(dirname(d).length + (dirname(d) === "/" ? 0 : 1)))) return new Set<string>();
        return new Set(await readdir(inProcessRoot(rootDir, d)).catch(() => [] as string[]));
      })();
      cache.listings.set(key, v);
    }
    return v;
  };
  const exists = async (file: string) => (await listing(dirname(file))).has(file.slice(dirname(file).length + 1)) && (await ctimeOf(file)) !== null;
  // An absolute import resolves the same from every file of the process: once.
  const resolved = new Map<string, Promise<string | null>>();
  const resolve = (module: string, fromDir: string): Promise<string | null> => {
    const key = module.startsWith(".") ? `${fromDir}\0${module}` : module;
    let v = resolved.get(key);
    if (!v) {
      v = resolveOnce(module, fromDir);
      resolved.set(key, v);
    }
    return v;
  };
  const resolveOnce = async (module: string, fromDir: string): Promise<string | null> => {
    const rel = p.interp === "python" ? relativeImportBase(module, fromDir) : null;
    const dirs = rel ? [rel.dir] : path;
    const name = rel ? rel.rest : module;
    if (name === "") return rel && (await exists(join(rel.dir, "__init__.py"))) ? join(rel.dir, "__init__.py") : null;
    for (const d of dirs) {
      for (const f of moduleFileNames(p.interp, name)) {
        const candidate = join(d, f);
        if (await exists(candidate)) return candidate;
      }
    }
    return null;
  };
  const importsOf = (file: string): Promise<string[] | null> => {
    const key = `${p.rootKey}\0${p.interp}\0${file}`;
    let v = cache.imports.get(key);
    if (!v) {
      v = (async () => {
        const st = await stat(inProcessRoot(rootDir, file)).catch(() => null);
        if (!st?.isFile() || st.size > MAX_SOURCE_BYTES) return null;
        return importedModules(p.interp, await readFile(inProcessRoot(rootDir, file), "utf8"));
      })().catch(() => null);
      cache.imports.set(key, v);
    }
    return v;
  };

  const seen = new Set<string>();
  const queue: string[] = [];
  if (start !== null) queue.push(start);
  else if ("module" in target) {
    const m = await resolve(target.module, cwd ?? "/");
    if (m) queue.push(m);
  }
  while (queue.length && seen.size < MAX_FILES) {
    const file = queue.shift()!;
    if (seen.has(file)) continue;
    seen.add(file);
    if (file !== start && isNewer(await ctimeOf(file))) out.set(file, "replaced");
    for (const module of (await importsOf(file)) ?? []) {
      const found = await resolve(module, dirname(file));
      if (found && !seen.has(found)) queue.push(found);
      // "import a.b.c" also runs a/__init__.py and a/b/__init__.py.
      if (p.interp === "python" && !module.startsWith(".") && module.includes(".")) {
        const parts = module.split(".");
        for (let i = 1; i < parts.length; i++) {
          const pkg = await resolve(parts.slice(0, i).join("."), dirname(file));
          if (pkg && !seen.has(pkg)) queue.push(pkg);
        }
      }
    }
  }
  return [...out].map(([path, change]) => ({ path, change }));
}

/** Perl's versioned library directories (/usr/share/perl/5.36, /usr/lib/<triplet>/perl/5.36, perl5/5.36, perl-base). */
async function perlVersionedDirs(rootDir: string): Promise<string[]> {
  const ls = (p: string) => readdir(inProcessRoot(rootDir, p)).catch(() => [] as string[]);
  const out: string[] = [];
  for (const v of await ls("/usr/share/perl")) out.push(`/usr/share/perl/${v}`);
  for (const t of (await ls("/usr/lib")).filter((d) => /-linux-gnu/.test(d))) {
    out.push(`/usr/lib/${t}/perl-base`);
    for (const sub of ["perl", "perl5"]) for (const v of await ls(`/usr/lib/${t}/${sub}`)) out.push(`/usr/lib/${t}/${sub}/${v}`);
  }
  return out;
}
