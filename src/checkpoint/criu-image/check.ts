/**
 * Checks the CRIU image of a pod against what autopod would have made for its
 * spec, before CRIU restores it: the mounts (pod-shape.ts's allow-list plus
 * the pod's declared volumes, each by type, source, root, options and flags),
 * every thread's credentials (no capability outside the pod's bounding set),
 * and every open file (regular files on one of those mounts, under it, with
 * no ".." in their path; no kind of file a pod cannot have), and the tar
 * CRIU restores a tmpfs from (no device nodes, nothing outside). Anything else
 * is refused with the file, the record and the reason.
 */
import { lstatSync, readdirSync, readFileSync } from "node:fs";
import { posix } from "node:path";
import type { PodMount } from "../../pods/pod.ts";
import { externalMountsOf } from "../../pods/pod.ts";
import { capabilityNames, POD_CAPABILITY_MASK, POD_FILE_SYSTEMS, type PodFileSystem, podMountLayout } from "../../platform/linux/pod-shape.ts";
import { quote } from "../../quote.ts";
import { CriuImageError, ImageRefusedError } from "./errors.ts";
import { checkPagemap, PAGE_SIZE, PAGEMAP_FILE } from "./pagemap.ts";
import { checkTmpfsTar, TMPFS_TAR } from "./tmpfs-tar.ts";
import { decodeCore, decodeFdinfo, decodeFiles, decodeInventory, decodeMounts, FD_TYPE, type FileRecord, type MountRecord } from "./records.ts";

/** What the pod was, from its manifest: the mounts autopod makes for it. */
export interface ExpectedPod {
  mounts: PodMount[];
  rootKind: "overlay" | "copy";
  /** A post-copy image: pagemap entries may be lazy only (their pages are not in the image; they come from the source). */
  hasLazyPages?: boolean;
}

export interface CriuImageSummary {
  mounts: number;
  threads: number;
  files: number;
  /** Bytes of CRIU metadata read and decoded. */
  bytesRead: number;
}

/** The metadata files read are small; anything bigger is not CRIU's. */
const MAX_METADATA_BYTES = 64 << 20;
/** Per-mount flags CRIU records that autopod's mounts may carry (MS_RDONLY, NOSUID, NODEV, NOEXEC, SYNCHRONOUS, MANDLOCK, DIRSYNC, NOSYMFOLLOW, the atime family, MS_SILENT, MS_REC, MS_SLAVE/PRIVATE). */
const HARMLESS_FLAGS = 1 | 2 | 4 | 8 | 0x400 | 0x800 | 0x8000 | 0x4000 | 0x40000 | 0x80000 | 0x200000 | 0x1000000 | 0x100 | 16 | 64 | 128;
/** MS_NOSUID | MS_NODEV: a volume may carry more restrictions, never fewer than the root's. */
const MS_NOSUID = 2;
const MS_NODEV = 4;
const MS_NOEXEC = 8;
const TASK_DEAD = 2;
const TASK_ZOMBIE = 6;
/** fd kinds a pod cannot make or autopod cannot vouch for: external files, namespace files, tun, bpf maps, fanotify (CAP_SYS_ADMIN). */
const REFUSED_FD_TYPES = new Set([0, 12, 14, 15, 16, 19]);

/** The mounts autopod makes for a pod of this manifest spec (volumes at their recorded pod paths). */
export function expectedPodOf(spec: { volumes?: ReadonlyArray<{ host: string; pod: string; readonly: boolean }>; rootKind?: "overlay" | "copy" }): ExpectedPod {
  const rootKind = spec.rootKind ?? "overlay";
  const volumes = (spec.volumes ?? []).map((v) => ({ host: v.host, pod: posix.normalize(v.pod), readonly: v.readonly === true }));
  return { mounts: podMountLayout(volumes, rootKind), rootKind };
}

/** Refuse (ImageRefusedError) a CRIU image in `dir` that holds anything autopod would not have produced for `expected`. */
export function checkCriuImage(imageId: string, dir: string, expected: ExpectedPod): CriuImageSummary {
  try {
    return check(dir, expected);
  } catch (e) {
    if (e instanceof CriuImageError) throw new ImageRefusedError(imageId, e.message, { cause: e });
    throw e;
  }
}

function check(dir: string, expected: ExpectedPod): CriuImageSummary {
  const names = readdirSync(dir);
  let bytesRead = 0;
  const read = (name: string): Uint8Array => {
    const st = lstatSync(`${dir}/${name}`);
    if (!st.isFile()) throw new CriuImageError(`${name} is not a regular file`);
    if (st.size > MAX_METADATA_BYTES) throw new CriuImageError(`${name} is ${st.size} bytes, too big for CRIU metadata`);
    const b = new Uint8Array(readFileSync(`${dir}/${name}`));
    bytesRead += b.byteLength;
    return b;
  };
  if (!names.includes("inventory.img")) throw new CriuImageError("the image has no inventory.img");
  const inventory = decodeInventory("inventory.img", read("inventory.img"));
  if (inventory.imgVersion !== 2) throw new CriuImageError(`inventory.img has image version ${inventory.imgVersion}; CRIU 3 and 4 write 2`);

  const mountFiles = names.filter((n) => /^mountpoints-\d+\.img$/.test(n));
  if (mountFiles.length !== 1) {
    throw new CriuImageError(`the image has ${mountFiles.length} mount namespaces (${mountFiles.join(", ") || "none"}); a pod has exactly one`);
  }
  const mounts = decodeMounts(mountFiles[0]!, read(mountFiles[0]!));
  checkMounts(mountFiles[0]!, mounts, expected);

  let threads = 0;
  for (const name of names.filter((n) => /^core-\d+\.img$/.test(n))) {
    for (const [i, core] of decodeCore(name, read(name)).entries()) {
      threads++;
      const c = core.creds;
      if (!c) {
        // A zombie is restored only to exit: CRIU records no credentials for it.
        if (core.taskState === TASK_ZOMBIE || core.taskState === TASK_DEAD) continue;
        throw new CriuImageError(`${name} entry ${i + 1} has no credentials; CRIU records them for every live task`);
      }
      const sets: Array<[string, bigint]> = [
        ["bounding", c.capBnd],
        ["permitted", c.capPrm],
        ["effective", c.capEff],
        ["inheritable", c.capInh],
        ["ambient", c.capAmb],
      ];
      for (const [set, mask] of sets) {
        const extra = mask & ~POD_CAPABILITY_MASK;
        if (extra !== 0n) {
          throw new CriuImageError(
            `${name} entry ${i + 1} (${JSON.stringify(core.comm ?? "")}) has ${capabilityNames(extra)} in its ${set} set; a pod's processes may only have ${capabilityNames(POD_CAPABILITY_MASK)}`,
          );
        }
      }
    }
  }
  if (threads === 0) throw new CriuImageError("the image has no task (no core-*.img)");

  let files = 0;
  const fileTable = names.includes("files.img") ? decodeFiles("files.img", read("files.img")) : [];
  checkFdTables(names, read, fileTable);
  if (fileTable.length > 0) {
    const byId = new Map(mounts.map((m) => [m.mntId, m]));
    for (const f of fileTable) {
      files++;
      const what = `files.img entry ${f.index}`;
      if (REFUSED_FD_TYPES.has(f.type) || FD_TYPE[f.type] === undefined) {
        throw new CriuImageError(`${what} is a ${FD_TYPE[f.type] ?? `file of type ${f.type}`}, which a pod's processes cannot have`);
      }
      if (f.unix) {
        // A socket bound to a path is bound again at restore, as root: its path stays in the pod.
        const u = f.unix;
        const isAbstract = u.name.byteLength === 0 || u.name[0] === 0;
        const path = new TextDecoder().decode(u.name);
        if (!isAbstract && (path.includes("\0") || path.split("/").includes(".."))) {
          throw new CriuImageError(`${what} is a unix socket bound at ${quote(path)}, which leaves the pod ("..")`);
        }
        if (u.nameDir !== undefined && (!u.nameDir.startsWith("/") || u.nameDir.split("/").includes(".."))) {
          throw new CriuImageError(`${what} is a unix socket bound in ${quote(u.nameDir)}, not an absolute path inside the pod`);
        }
        if (u.mntId !== -1 && !byId.has(u.mntId))
          throw new CriuImageError(`${what} is a unix socket on mount ${u.mntId}, which is not one of the pod's mounts`);
      }
      if (f.type !== 1) continue;
      if (!f.reg) throw new CriuImageError(`${what} is a regular file without its record`);
      const { name, mntId, isExternal } = f.reg;
      const quoted = quote(name);
      if (isExternal) throw new CriuImageError(`${what} ${quoted} is an external file, which autopod never passes to CRIU`);
      if (!name.startsWith("/") || name.includes("\0") || name.split("/").includes("..")) {
        throw new CriuImageError(`${what} opens ${quoted}, which is not an absolute path inside the pod`);
      }
      const m = byId.get(mntId);
      if (!m) throw new CriuImageError(`${what} opens ${quoted} on mount ${mntId}, which is not one of the pod's mounts`);
      if (!isUnder(name, m.mountpoint)) {
        throw new CriuImageError(`${what} opens ${quoted} on mount ${mntId}, which is mounted at ${JSON.stringify(m.mountpoint)}: the file is not on it`);
      }
    }
  }
  for (const name of names.filter((n) => TMPFS_TAR.test(n))) checkTmpfsTar(name, read(name));
  checkPages(dir, names, read, expected.hasLazyPages === true);
  return { mounts: mounts.length, threads, files, bytesRead };
}

/** FD_CLOEXEC: the only flag of an fd itself (fcntl F_GETFD), which is what CRIU records. */
const FD_CLOEXEC = 1;
/** The kernel's ceiling on fd numbers (fs.nr_open's default and most hosts' setting). */
const MAX_FD = 1 << 20;

/**
 * Every task's fd table (fdinfo-N.img): each fd once, below the kernel's
 * ceiling, with only FD_CLOEXEC, naming a file of files.img of the same
 * kind. An fd named twice made CRIU wait for good for a file it would never
 * be sent (fuzz finding, CI run of 2026-11-30).
 */
function checkFdTables(names: string[], read: (name: string) => Uint8Array, fileTable: FileRecord[]): void {
  const types = new Map(fileTable.map((f) => [f.id, f.type]));
  for (const name of names.filter((n) => /^fdinfo-\d+\.img$/.test(n))) {
    const seen = new Set<number>();
    for (const e of decodeFdinfo(name, read(name))) {
      const what = `${name} entry ${e.index}`;
      if (e.fd >= MAX_FD) throw new CriuImageError(`${what} opens fd ${e.fd}; fds end below ${MAX_FD}`);
      if (seen.has(e.fd)) throw new CriuImageError(`${what} opens fd ${e.fd} again; a task has each fd once`);
      seen.add(e.fd);
      if ((e.flags & ~FD_CLOEXEC) !== 0) throw new CriuImageError(`${what} gives fd ${e.fd} the flags ${e.flags}; an fd has only FD_CLOEXEC (1)`);
      const type = types.get(e.id);
      if (type === undefined) throw new CriuImageError(`${what} opens file ${e.id} at fd ${e.fd}, which files.img does not have`);
      if (type !== e.type) {
        throw new CriuImageError(
          `${what} opens file ${e.id} at fd ${e.fd} as a ${FD_TYPE[e.type] ?? `file of type ${e.type}`}; files.img has it as a ${FD_TYPE[type] ?? `file of type ${type}`}`,
        );
      }
    }
  }
}

function checkMounts(file: string, mounts: MountRecord[], expected: ExpectedPod): void {
  const ids = new Set(mounts.map((m) => m.mntId));
  if (ids.size !== mounts.length) throw new CriuImageError(`${file} lists a mount id twice`);
  const tops = mounts.filter((m) => !ids.has(m.parentMntId));
  if (tops.length !== 1 || tops[0]!.mountpoint !== "/") {
    throw new CriuImageError(
      `${file} has ${tops.length} top mounts (${tops.map((m) => JSON.stringify(m.mountpoint)).join(", ")}); a pod has one, its root at "/"`,
    );
  }
  const external = new Map(externalMountsOf({ mounts: expected.mounts }).map((x) => [x.podPath, x.key]));
  const allowed = new Map(expected.mounts.map((m) => [m.podPath, m]));
  const fileSystems = new Map<string, PodFileSystem>(POD_FILE_SYSTEMS.map((f) => [f.podPath, f]));
  const byMountpoint = new Map<string, MountRecord>();
  const only = () => `a pod may only mount ${expected.mounts.map((m) => m.podPath).join(", ")} (its root, volumes and system mounts)`;
  for (const m of mounts) {
    const what = `${file} mount ${m.index} is ${JSON.stringify(m.fsname ?? m.fstype)} of ${JSON.stringify(m.source)} (root ${JSON.stringify(m.root)}) at ${JSON.stringify(m.mountpoint)}`;
    if (byMountpoint.has(m.mountpoint)) throw new CriuImageError(`${what}, a second mount there; ${only()}`);
    byMountpoint.set(m.mountpoint, m);
    const want = allowed.get(m.mountpoint);
    if (!want) throw new CriuImageError(`${what}; ${only()}`);
    if (m.hasPlugin) throw new CriuImageError(`${what}, restored by a CRIU plugin; autopod uses none`);
    if (m.isDeleted) throw new CriuImageError(`${what}, whose root was deleted; autopod never makes such a mount`);
    if ((m.flags & ~HARMLESS_FLAGS) !== 0)
      throw new CriuImageError(`${what} with mount flags 0x${m.flags.toString(16)}; a pod's mounts have none of 0x${(m.flags & ~HARMLESS_FLAGS).toString(16)}`);
    if (m.mountpoint === "/") {
      if (m !== tops[0]) throw new CriuImageError(`${what}, not the top mount; ${only()}`);
      // CRIU binds --root there whatever the record says; an overlay pod's root must still be one.
      if (m.extKey !== undefined || m.isExternal) throw new CriuImageError(`${what}, from outside the pod; the root is the pod's own`);
      if (expected.rootKind === "overlay" && m.fstype !== "overlay") throw new CriuImageError(`${what}; this pod's root is an overlay`);
      continue;
    }
    if (want.kind === "bind") {
      const key = external.get(m.mountpoint);
      // A bind from the host is external: CRIU binds the host path autopod maps its key to, and nothing else.
      if (m.extKey !== key || m.isExternal) {
        throw new CriuImageError(
          `${what}, not the host bind autopod makes there (external key ${JSON.stringify(m.extKey ?? null)}, expected ${JSON.stringify(key)}); ${only()}`,
        );
      }
      if (!m.root.startsWith("/") || m.root.split("/").includes("..")) throw new CriuImageError(`${what}, with a root that is not an absolute path`);
      if (want.readonly && (m.flags & 1) === 0) throw new CriuImageError(`${what} read-write; the pod's volume there is read-only`);
      continue;
    }
    const fs = fileSystems.get(m.mountpoint);
    if (!fs || fs.kind !== want.kind) throw new CriuImageError(`${what}; ${only()}`);
    const parent = mounts.find((p) => p.mntId === m.parentMntId);
    if (m.extKey !== undefined || m.isExternal) throw new CriuImageError(`${what}, from outside the pod; autopod mounts a new ${fs.fstype} there`);
    if (m.fstype !== fs.fstype || m.source !== fs.source || m.root !== "/" || parent?.mountpoint !== fs.parent) {
      throw new CriuImageError(
        `${what} on ${JSON.stringify(parent?.mountpoint ?? null)}; autopod mounts ${fs.fstype} of "${fs.source}" (root "/") there, on ${JSON.stringify(fs.parent)}`,
      );
    }
    const needs = fs.flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC);
    if ((m.flags & needs) !== needs)
      throw new CriuImageError(`${what} without the flags 0x${needs.toString(16)} (nosuid, nodev, noexec) autopod mounts it with`);
  }
  for (const want of expected.mounts) {
    if (want.kind !== "bind" && !byMountpoint.has(want.podPath)) {
      throw new CriuImageError(`${file} has no mount at ${JSON.stringify(want.podPath)}; every pod has its ${want.kind} there`);
    }
  }
}

/** Every pagemap's entries, and each pages file exactly as big as the pages its pagemap says it holds. */
function checkPages(dir: string, names: string[], read: (name: string) => Uint8Array, allowLazy: boolean): void {
  const claimed = new Map<string, string>();
  for (const name of names.filter((n) => PAGEMAP_FILE.test(n))) {
    const { pagesFile, pages } = checkPagemap(name, read(name), allowLazy);
    const other = claimed.get(pagesFile);
    if (other !== undefined) throw new CriuImageError(`${name} and ${other} both name ${pagesFile}; each pagemap has its own pages file`);
    claimed.set(pagesFile, name);
    if (!names.includes(pagesFile)) {
      if (pages === 0) continue;
      throw new CriuImageError(`${name} lists ${pages} pages in ${pagesFile}, which the image does not have`);
    }
    const st = lstatSync(`${dir}/${pagesFile}`);
    if (!st.isFile()) throw new CriuImageError(`${pagesFile} is not a regular file`);
    if (st.size !== pages * PAGE_SIZE) {
      throw new CriuImageError(`${name} lists ${pages} pages (${pages * PAGE_SIZE} bytes) in ${pagesFile}, which is ${st.size} bytes`);
    }
  }
  const orphan = names.find((n) => /^pages-\d+\.img$/.test(n) && !claimed.has(n));
  if (orphan) throw new CriuImageError(`${orphan} is named by no pagemap`);
}

/** Is `path` at or below `dir` (both absolute)? */
function isUnder(path: string, dir: string): boolean {
  const p = posix.normalize(path);
  return dir === "/" || p === dir || p.startsWith(`${dir}/`);
}
