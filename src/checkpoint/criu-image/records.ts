/**
 * Decoders for the few CRIU records the image check reads, with field numbers
 * from CRIU's images/*.proto (mnt.proto, core.proto, creds.proto,
 * fdinfo.proto, regfile.proto, pstree.proto, inventory.proto).
 */
import { CriuImageError } from "./errors.ts";
import { MAGIC, readMessages } from "./image-file.ts";
import type { ProtoMessage } from "./protobuf.ts";

/** mnt.proto `fstype`, the ones a pod may have by name. */
export const FSTYPE: Record<number, string> = {
  0: "unsupported",
  1: "proc",
  2: "sysfs",
  3: "devtmpfs",
  4: "binfmt_misc",
  5: "tmpfs",
  6: "devpts",
  7: "simfs",
  8: "pstore",
  9: "securityfs",
  10: "fusectl",
  11: "debugfs",
  12: "cgroup",
  13: "aufs",
  14: "mqueue",
  15: "fuse",
  16: "auto",
  17: "overlay",
  18: "autofs",
  19: "tracefs",
  23: "cgroup2",
};

/** One mount of the pod's mount namespace (mnt_entry). */
export interface MountRecord {
  /** 1-based index in its file, for messages. */
  index: number;
  fstype: string;
  mntId: number;
  parentMntId: number;
  /** MS_* per-mount flags. */
  flags: number;
  /** Superblock flags, when recorded. */
  sbFlags: number | undefined;
  root: string;
  mountpoint: string;
  source: string;
  options: string;
  /** CRIU's name for a file system it has no number for ("auto"). */
  fsname: string | undefined;
  isExternal: boolean;
  extKey: string | undefined;
  isDeleted: boolean;
  hasPlugin: boolean;
}

export function decodeMounts(name: string, bytes: Uint8Array): MountRecord[] {
  return readMessages(name, bytes, MAGIC.mnts).map((m, i) => {
    const what = `${name} entry ${i + 1}`;
    const type = m.requireUint32(1, what);
    return {
      index: i + 1,
      fstype: FSTYPE[type] ?? `fstype ${type}`,
      mntId: m.requireUint32(2, what),
      parentMntId: m.requireUint32(4, what),
      flags: m.requireUint32(5, what),
      sbFlags: m.uint32(17, what),
      root: m.requireString(6, what),
      mountpoint: m.requireString(7, what),
      source: m.requireString(8, what),
      options: m.requireString(9, what),
      fsname: m.string(14, what),
      isExternal: m.bool(13, what) ?? false,
      extKey: m.string(18, what),
      isDeleted: m.bool(16, what) ?? false,
      hasPlugin: m.bool(12, what) ?? false,
    };
  });
}

/** A thread's credentials (creds_entry inside thread_core_entry). */
export interface CredsRecord {
  uid: number[];
  gid: number[];
  /** Capability sets as 64-bit masks (CRIU stores them as u32 words, low word first). */
  capInh: bigint;
  capPrm: bigint;
  capEff: bigint;
  capBnd: bigint;
  capAmb: bigint;
  secbits: number;
  groups: number[];
}

/** One task's or thread's core (core-PID.img): its name and credentials. */
export interface CoreRecord {
  /** COMPEL_TASK_*: 1 alive, 2 dead, 3 stopped, 6 zombie. */
  taskState: number | undefined;
  comm: string | undefined;
  creds: CredsRecord | undefined;
  seccompMode: number | undefined;
}

export function decodeCore(name: string, bytes: Uint8Array): CoreRecord[] {
  return readMessages(name, bytes, MAGIC.core).map((m, i) => {
    const what = `${name} entry ${i + 1}`;
    const tc = m.message(3, `${what} task core`);
    const th = m.message(5, `${what} thread core`);
    const c = th?.message(10, `${what} creds`);
    return {
      taskState: tc?.uint32(1, `${what} task core`),
      comm: tc?.string(6, `${what} task core`),
      seccompMode: th?.uint32(11, `${what} thread core`),
      creds: c ? decodeCreds(c, `${what} creds`) : undefined,
    };
  });
}

function decodeCreds(c: ProtoMessage, what: string): CredsRecord {
  const mask = (n: number) => c.uint32s(n, what).reduce((acc, w, i) => acc | (BigInt(w) << BigInt(32 * i)), 0n);
  return {
    uid: [1, 3, 5, 7].map((n) => c.requireUint32(n, what)),
    gid: [2, 4, 6, 8].map((n) => c.requireUint32(n, what)),
    capInh: mask(9),
    capPrm: mask(10),
    capEff: mask(11),
    capBnd: mask(12),
    capAmb: mask(19),
    secbits: c.requireUint32(13, what),
    groups: c.uint32s(14, what),
  };
}

/** fdinfo.proto `fd_types`, by number. */
export const FD_TYPE: Record<number, string> = {
  0: "undefined",
  1: "regular file",
  2: "pipe",
  3: "fifo",
  4: "inet socket",
  5: "unix socket",
  6: "eventfd",
  7: "eventpoll",
  8: "inotify",
  9: "signalfd",
  10: "packet socket",
  11: "tty",
  12: "fanotify",
  13: "netlink socket",
  14: "namespace file",
  15: "tun",
  16: "external file",
  17: "timerfd",
  18: "memfd",
  19: "bpf map",
  20: "pidfd",
};

/** One entry of a task's fd table, fdinfo-N.img (fdinfo_entry): which file of files.img is open at which fd. */
export interface FdinfoRecord {
  index: number;
  id: number;
  flags: number;
  type: number;
  fd: number;
}

export function decodeFdinfo(name: string, bytes: Uint8Array): FdinfoRecord[] {
  return readMessages(name, bytes, MAGIC.fdinfo).map((m, i) => {
    const what = `${name} entry ${i + 1}`;
    return { index: i + 1, id: m.requireUint32(1, what), flags: m.requireUint32(2, what), type: m.requireUint32(3, what), fd: m.requireUint32(4, what) };
  });
}

/** One open file of files.img (file_entry), with its reg_file_entry when it is a regular file. */
export interface FileRecord {
  index: number;
  type: number;
  id: number;
  reg: { name: string; mntId: number; flags: number; isExternal: boolean } | undefined;
  /** A unix socket's bound name (a path, or abstract when it starts with NUL), the directory it was bound in, its mount. */
  unix: { name: Uint8Array; nameDir: string | undefined; mntId: number } | undefined;
  /** Which embedded records the entry carries (field numbers), to spot kinds the checker does not look into. */
  fields: number[];
}

export function decodeFiles(name: string, bytes: Uint8Array): FileRecord[] {
  return readMessages(name, bytes, MAGIC.files).map((m, i) => {
    const what = `${name} entry ${i + 1}`;
    const r = m.message(3, `${what} reg`);
    const u = m.message(16, `${what} unix socket`);
    return {
      index: i + 1,
      type: m.requireUint32(1, what),
      id: m.requireUint32(2, what),
      reg: r
        ? {
            name: r.requireString(6, `${what} reg`),
            mntId: r.sint32(7, `${what} reg`) ?? -1,
            flags: r.requireUint32(2, `${what} reg`),
            isExternal: r.bool(9, `${what} reg`) ?? false,
          }
        : undefined,
      unix: u
        ? {
            name: u.bytes(11, `${what} unix socket`) ?? new Uint8Array(),
            nameDir: u.string(14, `${what} unix socket`),
            mntId: u.sint32(17, `${what} unix socket`) ?? -1,
          }
        : undefined,
      fields: m.numbers(),
    };
  });
}

/** One task of pstree.img. */
export interface PstreeRecord {
  pid: number;
  ppid: number;
  pgid: number;
  sid: number;
  threads: number[];
}

export function decodePstree(name: string, bytes: Uint8Array): PstreeRecord[] {
  return readMessages(name, bytes, MAGIC.pstree).map((m, i) => {
    const what = `${name} entry ${i + 1}`;
    return {
      pid: m.requireUint32(1, what),
      ppid: m.requireUint32(2, what),
      pgid: m.requireUint32(3, what),
      sid: m.requireUint32(4, what),
      threads: m.uint32s(5, what),
    };
  });
}

/** inventory.img: the image version and the root task's namespace ids. */
export interface InventoryRecord {
  imgVersion: number;
  rootMntNsId: number | undefined;
}

export function decodeInventory(name: string, bytes: Uint8Array): InventoryRecord {
  const all = readMessages(name, bytes, MAGIC.inventory);
  if (all.length !== 1) throw new CriuImageError(`${name} has ${all.length} entries, not 1`);
  const m = all[0]!;
  const ids = m.message(3, `${name} root ids`);
  return { imgVersion: m.requireUint32(1, name), rootMntNsId: ids?.uint32(9, `${name} root ids`) };
}
