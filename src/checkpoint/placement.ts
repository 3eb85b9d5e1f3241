/**
 * Where a pod's files live: its writable layer, and, at restore, its base
 * root file system and its volumes. An image made on this host may name host
 * paths; one made elsewhere gets copies in this agent's state directory, and
 * may name no host directory but shared storage.
 */
import { existsSync, lstatSync, mkdirSync, readdirSync, realpathSync, renameSync, rmSync, statSync, type Stats } from "node:fs";
import { dirname, join } from "node:path";
import { PreconditionError } from "../errors.ts";
import { childPath } from "../pods/child-path.ts";
import { canonicalPath, whyHostPathIsProtected } from "../pods/host-dirs.ts";
import type { PodRecord } from "../pods/pod.ts";
import type { ChunkStore } from "../store/chunk-store.ts";
import type { ManifestPodSpec } from "./manifest-pod.ts";
import type { FileEntry, Manifest } from "../image/manifest.ts";
import { materializeTree, materializeTreeYielding } from "./tree.ts";

/**
 * An excluded (shared-storage) volume named by an image from elsewhere: an existing directory,
 * not a system one, not our state, however it is spelled (realpath first, then host-dirs.ts).
 */
export function checkSharedVolume(host: unknown, stateDir: string): void {
  if (typeof host !== "string" || !host.startsWith("/") || host.includes("\0"))
    throw new PreconditionError(`The image names shared volume "${host}", which is not an absolute path`);
  const real = canonicalPath(host, realpathSync);
  const canonical = (p: string) => canonicalPath(p, realpathSync);
  const why = whyHostPathIsProtected(real, "Shared volume", { stateDir: canonical(stateDir) }, canonical);
  if (why) {
    throw new PreconditionError(`The image, made on another host, names "${host}" as shared storage: autopod will not give a pod that host directory (${why})`);
  }
  if (!existsSync(real) || !statSync(real).isDirectory()) {
    throw new PreconditionError(`The image's shared volume "${host}" is not a directory on this host: mount the shared storage there first`);
  }
}

/** The writable data of a pod's root: the overlay upper dir, or the private copy. */
export function writableLayerOf(rt: PodRecord["runtime"]): string {
  return join(rt.layerDir, rt.rootKind === "overlay" ? "upper" : "root");
}

/** What placement needs: the store to read from, the state directory to copy into. */
export interface PlacementContext {
  stateDir: string;
  store: ChunkStore;
}

/** The base root for a restored pod: the recorded path when it holds the same files, else a copy from the image. */
export function baseFor(o: PlacementContext, m: Manifest, spec: ManifestPodSpec, tmp: string, notes: string[], isLocal: boolean): string {
  const recorded = spec.rootfs;
  if (!m.base) {
    if (!isLocal) throw new PreconditionError("The image was made on another host and carries no base root file system");
    if (!recorded || !existsSync(recorded)) throw new PreconditionError(`The image's base root file system "${recorded}" is not on this host`);
    return recorded;
  }
  if (isLocal && recorded && existsSync(recorded) && sameTree(recorded, m.base)) return recorded;
  const dir = baseCopyDir(o, m.base);
  if (!existsSync(dir)) {
    mkdirSync(dirname(dir), { recursive: true, mode: 0o700 });
    materializeTree(m.base, o.store, join(tmp, "base"));
    renameSync(join(tmp, "base"), dir);
  }
  const why = !isLocal ? "comes from another host" : recorded && existsSync(recorded) ? "differs here" : "is not on this host";
  notes.push(`base root file system "${recorded}" ${why}: using the image's copy at ${dir}`);
  return dir;
}

/** Where baseFor keeps its copy of a base (by the base's contents, so pods and images with the same base share it). */
export function baseCopyDir(o: PlacementContext, base: readonly FileEntry[]): string {
  const key = new Bun.CryptoHasher("sha256")
    .update(JSON.stringify(base.map((e) => [e.path, e.type, e.size, e.mode, Buffer.from(e.chunks).toString("hex"), e.target ?? ""])))
    .digest("hex")
    .slice(0, 16);
  return join(o.stateDir, "bases", key);
}

/**
 * Make baseFor's copy of `base` ahead of a restore (a migration's destination, while the pod still
 * runs at its source: else the first move of a pod makes it inside the freeze), without holding the
 * event loop. True when it made it; false when it was there already.
 */
export async function stageBaseCopy(o: PlacementContext, base: readonly FileEntry[]): Promise<boolean> {
  const dir = baseCopyDir(o, base);
  if (existsSync(dir)) return false;
  mkdirSync(dirname(dir), { recursive: true, mode: 0o700 });
  try {
    await materializeTreeYielding(base, o.store, dir);
  } catch (e) {
    // Made meanwhile by another restore of the same base: that copy serves.
    if (existsSync(dir)) return false;
    throw e;
  }
  return true;
}

/** Where a restored volume lives: its recorded directory when it is missing, empty or unchanged; else a fresh one beside the pod. */
export function volumeHostFor(o: PlacementContext, hostPath: string, entries: FileEntry[], staged: string, pod: string, i: number, notes: string[]): string {
  if (existsSync(hostPath) && sameTree(hostPath, entries)) return hostPath;
  const isEmptyOrMissing = !existsSync(hostPath) || (statSync(hostPath).isDirectory() && readdirSync(hostPath).length === 0);
  materializeTree(entries, o.store, staged);
  if (isEmptyOrMissing) {
    if (existsSync(hostPath)) rmSync(hostPath, { recursive: true });
    mkdirSync(dirname(hostPath), { recursive: true });
    renameSync(staged, hostPath);
    return hostPath;
  }
  // Never overwrite data an operator may need: the image's copy goes beside the pod.
  return volumeInState(o, entries, staged, pod, i, notes, `volume "${hostPath}" changed since the checkpoint and was left as it is`, true);
}

/** A volume's contents from the image, in <state>/volumes/POD/volN. */
export function volumeInState(
  o: PlacementContext,
  entries: FileEntry[],
  staged: string,
  pod: string,
  i: number,
  notes: string[],
  why: string,
  isStaged = false,
): string {
  if (!isStaged) materializeTree(entries, o.store, staged);
  const dir = childPath(o.stateDir, "volumes", pod, `vol${i}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dirname(dir), { recursive: true, mode: 0o700 });
  renameSync(staged, dir);
  notes.push(`${why}: the pod uses the image's copy at ${dir}`);
  return dir;
}

/** Does `dir` hold the tree's files, by type, size and mtime (a cheap identity check)? */
function sameTree(dir: string, entries: readonly FileEntry[]): boolean {
  try {
    for (const e of entries) {
      const p = e.path === "." ? dir : join(dir, e.path);
      const st = statSafe(p);
      if (!st) return false;
      if (e.type === "file" && (!st.isFile() || st.size !== e.size || Math.abs(st.mtimeMs - e.mtimeMs) > 1)) return false;
      if (e.type === "dir" && !st.isDirectory()) return false;
      if (e.type === "symlink" && !st.isSymbolicLink()) return false;
    }
    return true;
  } catch {
    return false;
  }
}

function statSafe(p: string): Stats | null {
  try {
    return lstatSync(p);
  } catch {
    return null;
  }
}
