/**
 * What a pod is made of, as one allow-list: the mounts pod-init makes (by
 * type, source, options and flags), in the order the runtime records them,
 * and the capabilities its processes may keep. pod-init builds pods from
 * these, and the CRIU image check refuses any image that holds more, so the
 * two cannot drift apart. No libc here: the agent loads it.
 */
import type { PodMount } from "../../pods/pod.ts";
import { DEV_NODES, KEPT_CAPABILITIES } from "./pod-init-plan.ts";

/** mount(2) flags used below (<linux/mount.h>). */
export const MOUNT_FLAG = { RDONLY: 1, NOSUID: 2, NODEV: 4, NOEXEC: 8 } as const;

/** A file system pod-init mounts itself (not a bind from the host). */
export interface PodFileSystem {
  /** In the pod. */
  podPath: string;
  kind: "proc" | "tmpfs" | "devpts";
  /** As the kernel and CRIU name it. */
  fstype: string;
  source: string;
  flags: number;
  data: string;
  /** The mount it sits on, in the pod ("/" is the root). */
  parent: string;
}

const { NOSUID, NODEV, NOEXEC } = MOUNT_FLAG;

export const POD_PROC: PodFileSystem = {
  podPath: "/proc",
  kind: "proc",
  fstype: "proc",
  source: "proc",
  flags: NOSUID | NODEV | NOEXEC,
  data: "",
  parent: "/",
};
export const POD_DEV: PodFileSystem = {
  podPath: "/dev",
  kind: "tmpfs",
  fstype: "tmpfs",
  source: "tmpfs",
  flags: NOSUID | NOEXEC,
  data: "mode=755,size=1024k",
  parent: "/",
};
export const POD_DEVPTS: PodFileSystem = {
  podPath: "/dev/pts",
  kind: "devpts",
  fstype: "devpts",
  source: "devpts",
  flags: NOSUID | NOEXEC,
  data: "newinstance,ptmxmode=0666,mode=0620",
  parent: "/dev",
};
export const POD_TMP: PodFileSystem = {
  podPath: "/tmp",
  kind: "tmpfs",
  fstype: "tmpfs",
  source: "tmpfs",
  flags: NOSUID | NODEV,
  data: "mode=1777",
  parent: "/",
};

/** Every file system pod-init mounts, by pod path. */
export const POD_FILE_SYSTEMS: readonly PodFileSystem[] = [POD_PROC, POD_DEV, POD_DEVPTS, POD_TMP];

/**
 * The pod's mounts in the order the runtime records them (and CRIU's
 * external mount keys are given): the root, the volumes, /proc, /dev, the
 * device nodes, /dev/pts, /tmp. `volumes` have their pod paths resolved.
 */
export function podMountLayout(volumes: ReadonlyArray<{ host: string; pod: string; readonly: boolean }>, rootKind: "overlay" | "copy"): PodMount[] {
  const mounts: PodMount[] = [{ podPath: "/", kind: rootKind }];
  for (const v of volumes) mounts.push({ podPath: v.pod, kind: "bind", hostPath: v.host, readonly: v.readonly });
  mounts.push({ podPath: POD_PROC.podPath, kind: POD_PROC.kind }, { podPath: POD_DEV.podPath, kind: POD_DEV.kind });
  for (const n of DEV_NODES) mounts.push({ podPath: `/dev/${n}`, kind: "bind", hostPath: `/dev/${n}` });
  mounts.push({ podPath: POD_DEVPTS.podPath, kind: POD_DEVPTS.kind }, { podPath: POD_TMP.podPath, kind: POD_TMP.kind });
  return mounts;
}

/** The capability bounding set of every pod process, as a mask. */
export const POD_CAPABILITY_MASK: bigint = Object.values(KEPT_CAPABILITIES).reduce((m, c) => m | (1n << BigInt(c)), 0n);

/** Capability names by number (for messages). */
export const CAPABILITY_NAMES: readonly string[] = [
  "CHOWN",
  "DAC_OVERRIDE",
  "DAC_READ_SEARCH",
  "FOWNER",
  "FSETID",
  "KILL",
  "SETGID",
  "SETUID",
  "SETPCAP",
  "LINUX_IMMUTABLE",
  "NET_BIND_SERVICE",
  "NET_BROADCAST",
  "NET_ADMIN",
  "NET_RAW",
  "IPC_LOCK",
  "IPC_OWNER",
  "SYS_MODULE",
  "SYS_RAWIO",
  "SYS_CHROOT",
  "SYS_PTRACE",
  "SYS_PACCT",
  "SYS_ADMIN",
  "SYS_BOOT",
  "SYS_NICE",
  "SYS_RESOURCE",
  "SYS_TIME",
  "SYS_TTY_CONFIG",
  "MKNOD",
  "LEASE",
  "AUDIT_WRITE",
  "AUDIT_CONTROL",
  "SETFCAP",
  "MAC_OVERRIDE",
  "MAC_ADMIN",
  "SYSLOG",
  "WAKE_ALARM",
  "BLOCK_SUSPEND",
  "AUDIT_READ",
  "PERFMON",
  "BPF",
  "CHECKPOINT_RESTORE",
];

/** "CAP_SYS_ADMIN, CAP_MKNOD" for the bits of a mask. */
export function capabilityNames(mask: bigint): string {
  const out: string[] = [];
  for (let i = 0; i < 64; i++) if (mask & (1n << BigInt(i))) out.push(`CAP_${CAPABILITY_NAMES[i] ?? i}`);
  return out.join(", ");
}
