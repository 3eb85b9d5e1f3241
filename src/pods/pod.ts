/**
 * The pod model: what a user asked for (PodSpec), what the agent made of it
 * on this host (PodRuntimeInfo), and where it is in its life (PodState).
 */

/** Pod names: what `autopod run NAME` accepts. */
export const POD_NAME = /^[a-z0-9][a-z0-9_.-]{0,62}$/;

export type PodState = "creating" | "running" | "stopping" | "stopped" | "exited" | "checkpointing" | "checkpointed" | "restoring" | "removing";

export interface VolumeSpec {
  /** Absolute host path (directory or file). */
  host: string;
  /** Absolute path in the pod. */
  pod: string;
  readonly: boolean;
}

/** The user a pod's command runs as (`run --user UID[:GID]`); gid null: the uid's group in the pod's /etc/passwd, else 0. */
export interface PodUser {
  uid: number;
  gid: number | null;
}

/** The largest uid or gid: (uid_t)-1 means "no change" to the kernel. */
export const MAX_ID = 2 ** 32 - 2;

/** "UID[:GID]" as `run --user` takes it; null when it is not that. */
export function parsePodUser(s: string): PodUser | null {
  const m = /^(\d{1,10})(?::(\d{1,10}))?$/.exec(s);
  if (!m) return null;
  const uid = Number(m[1]);
  const gid = m[2] === undefined ? null : Number(m[2]);
  if (uid > MAX_ID || (gid !== null && gid > MAX_ID)) return null;
  return { uid, gid };
}

/** Everything needed to make the pod again, here or on another host. */
export interface PodSpec {
  name: string;
  /** Absolute path of the read-only base root file system. */
  rootfs: string;
  cmd: string[];
  env: Record<string, string>;
  hostname: string;
  /** ADDR/PREFIX, e.g. "10.213.0.2/24". */
  address: string;
  volumes: VolumeSpec[];
  /** Memory limit in bytes, or null for none. */
  memoryBytes: number | null;
  /** CPU limit in CPUs (1.5: one and a half), or null for none; absent in records of older agents. */
  cpus?: number | null;
  /** Limit on processes and threads, or null for none; absent in records of older agents. */
  pidsMax?: number | null;
  workdir: string;
  /** The CPU features its processes may use; absent for pods from before it was recorded (they may use their host's). */
  cpu?: PodCpu;
  /** The user the command runs as; absent: root. */
  user?: PodUser;
}

/** What a pod's processes may use of the CPU (docs/cluster.md, "CPU baseline"). */
export interface PodCpu {
  /** /proc/cpuinfo flags: a host restoring the pod's images must have those glibc or a program may choose code by. */
  features: string[];
  /** glibc's names of the features it started without: its GLIBC_TUNABLES has glibc.cpu.hwcaps turn them off. */
  hidden: string[];
}

/** The limits of a pod's cgroup, from its spec. */
export function limitsOf(spec: Pick<PodSpec, "memoryBytes" | "cpus" | "pidsMax">): { memoryBytes: number | null; cpus: number | null; pidsMax: number | null } {
  return { memoryBytes: spec.memoryBytes, cpus: spec.cpus ?? null, pidsMax: spec.pidsMax ?? null };
}

/**
 * One mount of the pod's mount namespace, in mount order. Bind mounts name
 * their host source: CRIU needs each as an external mount (`--external
 * mnt[POD_PATH]:KEY` at dump, `mnt[KEY]:HOST_PATH` at restore).
 */
export interface PodMount {
  podPath: string;
  kind: "overlay" | "copy" | "bind" | "proc" | "tmpfs" | "devpts";
  hostPath?: string;
  readonly?: boolean;
}

/** Host resources the agent made for the pod, all of them removed by `rm`. */
export interface PodRuntimeInfo {
  /** Net namespace name (under /run/netns). */
  netns: string;
  /** Host end of the pod's veth pair. */
  hostVeth: string;
  bridge: string;
  /** The pod's default gateway (the bridge's address). */
  gateway: string;
  /** Memory cgroup directory, or null when the host has no memory controller. */
  cgroup: string | null;
  /** <state_dir>/pods/<name>: the pod's writable layer and launch plan. */
  layerDir: string;
  rootKind: "overlay" | "copy";
  mounts: PodMount[];
}

export interface PodExit {
  /** Exit code, or null when a signal ended it or it is unknown. */
  code: number | null;
  signal: number | null;
  /** Why, in words, when it was not a plain exit: "OOM-killed: ...". */
  reason: string | null;
  at: string;
}

export interface PodRecord {
  /** Random, unique per pod instance. */
  id: string;
  spec: PodSpec;
  state: PodState;
  /** Host pid of the pod's pid 1, while it has one. */
  pid: number | null;
  /** /proc/PID/stat field 22 of that pid: a pid plus its start time names one process. */
  startTime: number | null;
  createdAt: string;
  startedAt: string | null;
  exit: PodExit | null;
  runtime: PodRuntimeInfo;
}

/** PATH when the user sets none. */
export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** The environment of the pod's command and of `exec`: defaults, then the user's. */
export function podEnvironment(spec: Pick<PodSpec, "env" | "hostname">): Record<string, string> {
  return { PATH: DEFAULT_PATH, HOME: "/root", HOSTNAME: spec.hostname, ...spec.env };
}

/** A bind mount from the host, named for CRIU: `--external mnt[POD_PATH]:KEY` at dump, `mnt[KEY]:HOST_PATH` at restore. */
export interface ExternalMount {
  podPath: string;
  key: string;
  hostPath: string;
}

/** The pod's bind mounts from the host with stable keys: "dev-null", ..., "vol0", "vol1", ... */
export function externalMountsOf(rt: Pick<PodRuntimeInfo, "mounts">): ExternalMount[] {
  let vol = 0;
  return rt.mounts
    .filter((m) => m.kind === "bind" && m.hostPath !== undefined)
    .map((m) => ({
      podPath: m.podPath,
      key: m.podPath.startsWith("/dev/") ? `dev-${m.podPath.slice(5).replaceAll("/", "-")}` : `vol${vol++}`,
      hostPath: m.hostPath!,
    }));
}

/** What `ps` shows for one pod. */
export interface PodView {
  name: string;
  /** running, stopped, exited(CODE), checkpointed, ... */
  state: string;
  phase: PodState;
  pid: number | null;
  address: string;
  startedAt: string | null;
  uptimeSeconds: number | null;
  rootfs: string;
  memoryBytes: number | null;
  memoryLimitBytes: number | null;
  /** CPU time its processes have used (cgroup), in seconds. */
  cpuSeconds: number | null;
  cpuLimit: number | null;
  /** Processes (and threads) in it now. */
  pids: number | null;
  pidsLimit: number | null;
  exitCode: number | null;
  signal: number | null;
  reason: string | null;
  cmd: string[];
  /** CPU features the pod started without so that it runs on every cluster member (glibc's names); empty when none. */
  cpuHidden: string[];
}

/** The state as ps prints it. A signal death reads as the shell's 128 + N. */
export function stateLabel(r: Pick<PodRecord, "state" | "exit">): string {
  if (r.state !== "exited") return r.state;
  const code = r.exit?.code ?? (r.exit?.signal ? 128 + r.exit.signal : null);
  return `exited(${code ?? "?"})`;
}

const SIGNAL_NAMES: Record<number, string> = {
  1: "SIGHUP",
  2: "SIGINT",
  3: "SIGQUIT",
  6: "SIGABRT",
  9: "SIGKILL",
  11: "SIGSEGV",
  13: "SIGPIPE",
  15: "SIGTERM",
};

export function signalName(n: number): string {
  return SIGNAL_NAMES[n] ?? `signal ${n}`;
}

export { formatBytes } from "../format.ts";

/** Parse a size: "64m", "64M", "64MiB", "1.5g", "1048576". Binary units. */
export function parseSize(s: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$/i.exec(s.trim());
  if (!m) return null;
  const mult = { "": 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2]!.toLowerCase() as "" | "k" | "m" | "g" | "t"];
  const v = Math.floor(Number(m[1]) * mult);
  return Number.isFinite(v) ? v : null;
}
