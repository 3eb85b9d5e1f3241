/**
 * What checkpoint and restore (src/checkpoint) need from the operating system:
 * CRIU, the pod's network lock, the pod's process tree, and a few facts about
 * the host. The Linux implementation is platform/linux/checkpoint-host.ts;
 * tests can pass a fake (src/checkpoint/_fake-checkpoint-host.ts).
 */
import type { ExternalMount } from "../pods/pod.ts";

export type { ExternalMount };

export interface CriuDumpOptions {
  criu: string;
  /** Host pid of the pod's pid 1. */
  pid: number;
  imagesDir: string;
  /** Inode of the pod's net namespace. */
  netnsInode: number;
  externalMounts: ExternalMount[];
  /** What CRIU does with the tasks after a good dump: kill them (null), or leave them stopped or running. */
  leave: "stopped" | "running" | null;
  /** autopod's own lock holds the pod's network (lockNetwork) throughout: CRIU locks nothing (`--network-lock skip`), else its nftables lock. */
  isNetworkLocked?: boolean;
  /** Called with criu's pid as soon as it starts (for crash recovery). */
  onSpawn?: (pid: number) => void;
}

export interface CriuRestoreOptions {
  criu: string;
  imagesDir: string;
  /** Where CRIU writes its log, stats and pid file: a fresh directory of autopod's, never one an image filled. */
  workDir?: string;
  /** The new pod root (already mounted). */
  root: string;
  /** Path of the pod's net namespace file. */
  netnsPath: string;
  externalMounts: ExternalMount[];
  /** Keep TCP connections (same address); when false they are closed. */
  tcpEstablished: boolean;
  /** The pod's cgroup: the processes are born there. */
  cgroup: string | null;
  /** Leave the restored tasks stopped (continue them to run). */
  leaveStopped?: boolean;
  /** Post-copy: memory comes from the lazy-pages daemon already listening in workDir (startLazyPages). */
  lazyPages?: boolean;
  /** autopod's own lock holds the pod's network until after the restore: CRIU locks nothing (`--network-lock skip`), else its nftables lock. */
  isNetworkLocked?: boolean;
  onSpawn?: (pid: number) => void;
}

/** A CRIU that serves or fetches a post-copy migration's pages through a unix socket the agent listens on (never a TCP port of its own). */
export interface LazyCriu {
  pid: number;
  /** Resolves once CRIU is ready: the dump has written its images (the tasks stay frozen), or the daemon waits for the restore. */
  ready: Promise<void>;
  /** CRIU's exit: resolves when it succeeded (every page served or fetched), rejects with its error. */
  done: Promise<void>;
  kill(): void;
}

/** `criu dump --lazy-pages`: the dump, then its page server on `pageSocket`, with the tasks stopped throughout and after. */
export interface LazyDumpOptions extends Omit<CriuDumpOptions, "leave"> {
  pageSocket: string;
}

/** `criu lazy-pages`: fetches the pages named by imagesDir from `pageSocket`, for a `criu restore --lazy-pages` with the same workDir. */
export interface LazyPagesOptions {
  criu: string;
  imagesDir: string;
  workDir: string;
  pageSocket: string;
}

/**
 * A pod's connected TCP socket (IPv4), read while the pod was stopped: its ends, the next
 * sequence numbers it expects and sends, its window field and timestamp (null: none).
 */
export interface TcpConnection {
  local: string;
  localPort: number;
  remote: string;
  remotePort: number;
  rcvNxt: number;
  sndNxt: number;
  window: number;
  tsVal: number | null;
}

export interface CheckpointHost {
  /** The CRIU binary: the configured path ("" = search), or null when there is none. */
  findCriu(configured: string): string | null;
  /** `criu --version` of that binary, or null when it does not answer. */
  criuVersion(path: string): Promise<string | null>;
  /** The running kernel's release, e.g. "6.18.0". */
  kernelRelease(): string;
  /** The CPU's feature flags, sorted. */
  cpuFlags(): string[];
  /** A program CRIU runs (tar and gzip restore tmpfs mounts), found as CRIU finds it, or null when this host has none. */
  findProgram(name: string): string | null;
  /** Why this kernel cannot hold a pod's network lock (no nftables: nf_tables neither loaded nor loadable), or null. */
  whyNoNftables(): Promise<string | null>;
  /** Bytes free to us on the file system of `dir`. */
  freeBytes(dir: string): number;

  /** `criu dump`; throws with CRIU's first error when it fails (the tasks then run on). */
  dump(o: CriuDumpOptions): Promise<{ durationMs: number }>;
  /** `criu dump --lazy-pages --leave-stopped` through an inherited socket. */
  dumpLazy(o: LazyDumpOptions): LazyCriu;
  /** `criu lazy-pages` through an inherited socket. */
  lazyPages(o: LazyPagesOptions): LazyCriu;
  /** `criu restore -d`; resolves with the host pid of the restored pod's pid 1. */
  restore(o: CriuRestoreOptions): Promise<{ pid: number; durationMs: number }>;

  /** Drop every packet in and out of the net namespace (our own lock). */
  lockNetwork(netnsPath: string): Promise<void>;
  /** Lift our own lock; throws when it cannot. */
  unlockNetwork(netnsPath: string): Promise<void>;
  /** Remove any network lock a failed CRIU run left behind; the tables removed. */
  removeCriuLock(netnsPath: string): Promise<string[]>;

  /** SIGCONT to every process of the pod whose pid 1 is `pid`; returns its TCP connections, read before they went on. */
  continueTree(pid: number): TcpConnection[];
  /** Make the peers of these connections retransmit now rather than when their backed-off timers fire; call once the network is unlocked. */
  nudgePeers(netnsPath: string, connections: readonly TcpConnection[]): void;
  /** SIGKILL to the pod's pid 1: its whole pid namespace ends. */
  killTree(pid: number): void;
  /** Processes of the pod holding something CRIU cannot dump (an io_uring). */
  undumpableResources(pid: number): Array<{ pid: number; command: string; resource: "io_uring" }>;
  /** Processes in the pod's pid namespace outside its process tree (started with `autopod exec`): CRIU cannot hold them. */
  execSessions(pid: number): Array<{ pid: number; command: string }>;
  /** SIGKILL to a process and everything it started. */
  killSession(pid: number): void;
  /** Wait until `pid` is gone or a zombie; false on timeout. */
  waitGone(pid: number, timeoutMs: number): Promise<boolean>;
  /** Is `pid` a live process (not a zombie)? */
  isAlive(pid: number): boolean;
  /** If `pid` is a CRIU left by an agent that died: let it finish (up to a minute: killed mid-dump, the pod's tasks die), else kill it; anything else is left alone. */
  killCriu(pid: number): Promise<void>;
}
