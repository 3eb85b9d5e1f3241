import { lstatSync, readlinkSync, type Stats } from "node:fs";

/** Where a path inside a root directory leads, with symlinks resolved inside the root. */
export interface RootPath {
  /** The resolved path as the root sees it, e.g. "/bin/busybox". */
  inRoot: string;
  /** The same on the host: root + inRoot. */
  onHost: string;
  /** lstat of the final component, or null when it does not exist. */
  stat: Stats | null;
}

const MAX_LINKS = 40;

/**
 * Resolve `path` as if `root` were "/": absolute symlinks restart at the root
 * and ".." never leaves it, so a root file system cannot point us at host
 * files. Components after the first missing one are kept as they are.
 */
export function resolveInRoot(root: string, path: string): RootPath {
  const base = root.replace(/\/+$/, "");
  let pending = splitPath(path);
  const done: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === "..") {
      done.pop();
      continue;
    }
    const onHost = base + "/" + [...done, part].join("/");
    let st: Stats | null;
    try {
      st = lstatSync(onHost);
    } catch {
      st = null;
    }
    if (st?.isSymbolicLink()) {
      if (++links > MAX_LINKS) throw new Error(`Too many symbolic links resolving "${path}" in "${root}"`);
      const target = readlinkSync(onHost);
      if (target.startsWith("/")) done.length = 0;
      pending = [...splitPath(target), ...pending];
      continue;
    }
    done.push(part);
    if (st === null) {
      done.push(...pending.filter((p) => p !== "."));
      return finish(base, done, null);
    }
  }
  return finish(base, done, done.length === 0 ? safeLstat(base || "/") : safeLstat(base + "/" + done.join("/")));
}

function finish(base: string, parts: string[], stat: Stats | null): RootPath {
  const inRoot = "/" + parts.join("/");
  return { inRoot, onHost: inRoot === "/" ? base || "/" : base + inRoot, stat };
}

function splitPath(p: string): string[] {
  return p.split("/").filter((s) => s !== "" && s !== ".");
}

function safeLstat(p: string): Stats | null {
  try {
    return lstatSync(p);
  } catch {
    return null;
  }
}

/**
 * Find an executable the way execvp would, but inside `root`: a name with a
 * slash is taken as is, otherwise each PATH directory is tried. Returns the
 * path inside the root, or null.
 */
export function findExecutableInRoot(root: string, cmd: string, pathVar: string): string | null {
  const candidates = cmd.includes("/")
    ? [cmd.startsWith("/") ? cmd : "/" + cmd]
    : pathVar
        .split(":")
        .filter(Boolean)
        .map((d) => `${d}/${cmd}`);
  for (const c of candidates) {
    const r = resolveInRoot(root, c);
    if (r.stat?.isFile() && (r.stat.mode & 0o111) !== 0) return r.inRoot;
  }
  return null;
}
