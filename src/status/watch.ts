/**
 * PathWatcher: tells when any of a list of paths may have changed, by
 * watching directories, never the files themselves. dpkg, rpm and apk replace
 * their databases by renaming a new file over the old one, which a watch on
 * the old file's inode would miss; a watch on the directory sees the rename.
 *
 * For each path it watches the parent directory (for events on that name),
 * and the path itself when it is a directory (for any event inside it: apt's
 * lists, /boot). A directory that does not exist yet (rpm's database on a
 * Debian host) or that was removed and made again is picked up by the next
 * arm(), which the owner calls from time to time; a watch that fails is
 * dropped and tried again then. A watched directory that is removed, or
 * renamed over, is watched afresh as soon as its parent's watch sees it go
 * (inode numbers are reused, so a stat cannot tell the new one from the old).
 * Directories are keyed by their real path, so /var/run and /run share one
 * watch.
 */
import { realpathSync, statSync, watch as fsWatch } from "node:fs";
import { basename, dirname, join } from "node:path";
import { errorMessage } from "../errors.ts";
import type { Logger } from "../log.ts";

export interface WatchHandle {
  close(): void;
}

/** What PathWatcher needs of the file system; tests pass fakes. */
export interface WatchFs {
  /** The directory's real path and inode, or null when it is missing or not a directory. */
  dir(path: string): { real: string; ino: number } | null;
  /** Watch one directory (not recursively). Throws when it cannot be watched. */
  watch(dir: string, onEvent: (name: string | null) => void, onError: (e: unknown) => void): WatchHandle;
}

export const nodeWatchFs: WatchFs = {
  dir(path) {
    try {
      const real = realpathSync(path);
      const st = statSync(real);
      return st.isDirectory() ? { real, ino: st.ino } : null;
    } catch {
      return null;
    }
  },
  watch(dir, onEvent, onError) {
    const w = fsWatch(dir, { persistent: false }, (_event, name) => onEvent(name === null || name === undefined ? null : String(name)));
    w.on("error", onError);
    return w;
  },
};

/** Names in a watched directory that never mean a change: lock files and download areas. */
const IGNORED_NAMES = new Set(["lock", "partial", "auxfiles"]);

interface Watched {
  /** The directory as first named (for messages). */
  path: string;
  ino: number;
  handle: WatchHandle;
}

interface Wanted {
  path: string;
  real: string;
  ino: number;
  /** Names whose events count; null: any name (the path is itself a watched directory). */
  names: Set<string> | null;
  /** The paths this directory stands for, as the caller named them. */
  targets: Set<string>;
}

export class PathWatcher {
  readonly paths: readonly string[];
  readonly #onChange: (path: string) => void;
  readonly #fs: WatchFs;
  readonly #log?: Logger;
  /** Armed watches, by real path. */
  readonly #watched = new Map<string, Watched>();
  /** The wanted directories as of the last arm(), by real path. */
  #wanted = new Map<string, Wanted>();
  /** Watches to make afresh at the next arm(): their directory was removed or replaced. */
  readonly #stale = new Set<string>();
  /** Directories whose watch could not be made, said once at warn level. */
  readonly #warned = new Set<string>();
  #armedOnce = false;
  #closed = false;

  constructor(paths: readonly string[], onChange: (path: string) => void, opts: { fs?: WatchFs; log?: Logger } = {}) {
    this.paths = [...paths];
    this.#onChange = onChange;
    this.#fs = opts.fs ?? nodeWatchFs;
    this.#log = opts.log;
  }

  /**
   * Watch every wanted directory not yet watched, and drop watches of
   * directories that are gone or were replaced. A directory that appeared
   * since the last arm() counts as a change. Returns the number of watches.
   */
  arm(): number {
    if (this.#closed) return 0;
    const wanted = this.#wantedDirs();
    for (const [real, w] of this.#watched) {
      const want = wanted.get(real);
      if (!want || want.ino !== w.ino || this.#stale.has(real)) {
        w.handle.close();
        this.#watched.delete(real);
        this.#log?.debug("status watch dropped", { dir: w.path, reason: want ? "replaced" : "gone" });
      }
    }
    this.#stale.clear();
    const appeared: string[] = [];
    for (const [real, want] of wanted) {
      if (this.#watched.has(real)) continue;
      try {
        const handle = this.#fs.watch(
          real,
          (name) => this.#event(real, name),
          (e) => this.#failed(real, e),
        );
        this.#watched.set(real, { path: want.path, ino: want.ino, handle });
        if (this.#armedOnce) appeared.push(...want.targets);
      } catch (e) {
        // The directory exists: this is a real failure (the inotify watch limit, permissions).
        const level = this.#warned.has(real) ? "debug" : "warn";
        this.#warned.add(real);
        this.#log?.[level]("status watch could not be made; will retry", { dir: want.path, error: errorMessage(e) });
      }
    }
    this.#wanted = wanted;
    this.#armedOnce = true;
    for (const p of new Set(appeared)) this.#fire(p);
    return this.#watched.size;
  }

  /** The directories watched now. */
  get watching(): string[] {
    return [...this.#watched.values()].map((w) => w.path).sort();
  }

  close(): void {
    this.#closed = true;
    for (const w of this.#watched.values()) w.handle.close();
    this.#watched.clear();
  }

  #wantedDirs(): Map<string, Wanted> {
    const wanted = new Map<string, Wanted>();
    const want = (path: string, name: string | null, target: string) => {
      const d = this.#fs.dir(path);
      if (!d) return;
      let w = wanted.get(d.real);
      if (!w) wanted.set(d.real, (w = { path, real: d.real, ino: d.ino, names: new Set(), targets: new Set() }));
      if (name === null) w.names = null;
      else w.names?.add(name);
      w.targets.add(target);
    };
    for (const p of this.paths) {
      want(dirname(p), basename(p), p);
      want(p, null, p);
    }
    return wanted;
  }

  #event(real: string, name: string | null): void {
    if (this.#closed) return;
    const want = this.#wanted.get(real);
    if (!want) return;
    if (name !== null && IGNORED_NAMES.has(name)) return;
    if (name !== null && want.names !== null && !want.names.has(name)) return;
    const path = name === null ? want.path : join(want.path, name);
    // A watched path went or came (a directory's watch, if any, is dead): look again.
    let rearm = this.paths.includes(path);
    for (const [r, w] of this.#wanted) {
      if (w.names === null && (w.targets.has(path) || (r === real && name === basename(want.path)))) {
        this.#stale.add(r);
        rearm = true;
      }
    }
    this.#fire(path);
    if (rearm) this.arm();
  }

  #failed(real: string, e: unknown): void {
    const w = this.#watched.get(real);
    if (!w) return;
    w.handle.close();
    this.#watched.delete(real);
    this.#log?.warn("status watch failed; will retry", { dir: w.path, error: errorMessage(e) });
    // What happened while it was failing is unknown: treat it as a change.
    this.#fire(w.path);
  }

  #fire(path: string): void {
    try {
      this.#onChange(path);
    } catch (e) {
      this.#log?.error("status change handler failed", { path, error: errorMessage(e) });
    }
  }
}
