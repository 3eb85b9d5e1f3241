/**
 * What the pod runtime (src/pods) needs from the operating system. The Linux
 * implementation is platform/linux/pod-host.ts; tests can pass a fake.
 */
import type { PodMount, PodRuntimeInfo, PodSpec } from "../pods/pod.ts";

export type { PodMount };

/** A pod's limits; null is none. */
export interface PodLimits {
  memoryBytes: number | null;
  /** CPUs' worth of time (1.5: one and a half CPUs). */
  cpus: number | null;
  pidsMax: number | null;
}

export interface ResourceUse {
  cpuSeconds: number | null;
  pids: number | null;
}

export interface MemoryUse {
  current: number;
  limit: number | null;
  oomKills: number;
}

/** How a process ended: an exit code, or the signal that killed it. Both null: unknown. */
export interface ExitStatus {
  code: number | null;
  signal: number | null;
}

export interface ProcessIdentity {
  startTime: number;
  /** How it ended when it is a zombie nobody reaped yet, else null. */
  exited: ExitStatus | null;
}

/** waitpid's answer: the exit, null while it runs, "not-child" when we cannot reap it. */
export type Reaped = ExitStatus | null | "not-child";

/** A terminal's size in character cells. */
export interface TerminalSize {
  rows: number;
  cols: number;
}

/** How `exec` runs a command: with stdin from the caller, with a terminal of the pod's own. */
export interface ExecOptions {
  /** Forward the caller's input (else stdin is /dev/null). */
  hasStdin?: boolean;
  /** Give the command a terminal of this size from the pod's devpts (stdin, stdout and stderr are then the terminal). */
  tty?: TerminalSize;
}

/** A command running in a pod for `exec`. */
export interface PodProcess {
  /** Its output; with a terminal, everything the terminal shows. */
  stdout: ReadableStream<Uint8Array>;
  /** Empty with a terminal. */
  stderr: ReadableStream<Uint8Array>;
  /** Resolves with the exit code, or 128 + signal. */
  exited: Promise<number>;
  kill(): void;
  /** Input for its stdin or terminal; resolves once taken (nothing happens without hasStdin). */
  write(data: Uint8Array): Promise<void>;
  /** End of input: stdin is closed (a terminal gets nothing: Ctrl-D is a byte it reads). */
  endInput(): void;
  /** A new terminal size (nothing happens without a terminal). */
  resize(size: TerminalSize): void;
}

export interface HostNetworkConfig {
  bridge: string;
  /** The bridge's address with the subnet's prefix, e.g. "10.213.0.1/24". */
  gatewayCidr: string;
  subnet: string;
  nat: boolean;
  /** Name of this agent's own nft table, used when nat is on. */
  natTable: string;
  /** Routed pod network: no bridge; forwarding and proxy ARP on this LAN interface. */
  routed?: { lanInterface: string };
}

/** What createNetwork left to the pod's init (launch). */
export interface PodNetworkMade {
  /** lo, eth0's address and the default route. */
  isPodSideLeft: boolean;
  /** The net namespace and the veth pair as well. */
  isNamespaceLeft?: boolean;
}

export interface PodHost {
  /** Bridge (and NAT) for this agent's pods; idempotent. */
  setUpNetwork(c: HostNetworkConfig): Promise<void>;

  /** "dir", "file", "other", or null when nothing is there. */
  pathKind(path: string): "dir" | "file" | "other" | null;
  realPath(path: string): string;
  /** An executable found as execvp would, inside `root`; its path there, or null. */
  findExecutable(root: string, cmd: string, pathVar: string): string | null;

  /** The memory cgroup a pod would get, or null when the host has no memory controller. */
  cgroupDir(agentKey: string, pod: string): string | null;
  /** Whether pods here can be limited in CPU time ("cpu") or number of processes ("pids"). */
  hasCgroupController(c: "cpu" | "pids"): boolean;
  /** Make the pod's cgroup (and, on v1, its directories in the cpu and pids hierarchies) with these limits. */
  createCgroup(dir: string, limits: PodLimits): void;
  /** Set the cpu and pids limits of the pod's existing cgroup (after a restore, which runs unthrottled). */
  limitCgroup(dir: string, limits: Pick<PodLimits, "cpus" | "pidsMax">): void;
  readMemory(dir: string): MemoryUse | null;
  /** CPU time used and processes in the cgroup now; what the host cannot tell is null. */
  readUsage(dir: string): ResourceUse;
  cgroupPids(dir: string): number[];
  removeCgroup(dir: string): Promise<void>;

  /**
   * With isLocked, all traffic is dropped from the start (a pod about to be restored).
   * With routed, the pod's /32 is routed to its veth and announced on the LAN (gratuitous ARP).
   * With mayLeavePodSide (a launch follows), the host may leave the pod's side (lo, eth0's address,
   * the default route) to the pod's init: then it answers isPodSideLeft, and launch must be told;
   * and (isNamespaceLeft) the namespace and the veth pair too, which then exist only once launch ran.
   */
  createNetwork(n: {
    netns: string;
    hostVeth: string;
    bridge: string;
    address: string;
    gateway: string;
    isLocked?: boolean;
    routed?: { lanInterface: string };
    mayLeavePodSide?: boolean;
  }): Promise<PodNetworkMade>;
  deleteNetwork(n: { netns: string; hostVeth: string }): Promise<void>;
  /** Routed: tell the LAN (gratuitous ARP on `lanInterface`) that this host answers for `address` (dotted IPv4) again. */
  announceAddress(lanInterface: string, address: string): Promise<void>;
  netnsPath(netns: string): string;
  netnsInode(netns: string): number;

  /** The mounts the pod's mount namespace will have, in order. */
  mountLayout(spec: PodSpec, rootKind: PodRuntimeInfo["rootKind"]): PodMount[];
  /** Make the pod's writable layer (overlay dirs, or a private copy of the base). */
  prepareLayer(spec: PodSpec, rt: PodRuntimeInfo): Promise<void>;
  /** Mount the pod's root on the host at <layerDir>/root without starting anything (for CRIU restore). */
  mountRootOnHost(spec: PodSpec, rt: PodRuntimeInfo): Promise<string>;
  /** Undo mountRootOnHost; nothing mounted is fine. */
  unmountRootOnHost(rt: PodRuntimeInfo): Promise<void>;
  /** Unmount whatever is under the layer directory, then delete it. Never crosses into a mount. */
  removeLayer(rt: PodRuntimeInfo): Promise<void>;
  /** The pod's log file as the host reads it: `rel` beneath the pod's writable layer `dir`, which the pod can change (open it with openBeneath). */
  logFile(rt: PodRuntimeInfo): { dir: string; rel: string };

  /** Start the pod's command; resolves once it runs, with the host pid of pod pid 1. net: as createNetwork answered. */
  launch(spec: PodSpec, rt: PodRuntimeInfo, net?: PodNetworkMade): Promise<{ pid: number; startTime: number; ms?: Record<string, number> }>;
  processIdentity(pid: number): ProcessIdentity | null;
  reap(pid: number): Reaped;
  /** The agent's own children that are zombies (exited, not reaped yet). */
  zombieChildren(): number[];
  /** Send a signal; a process that is already gone is fine. */
  signal(pid: number, signal: "SIGTERM" | "SIGKILL"): void;
  /** Run a command in all the pod's namespaces, its root and its cgroup. */
  execInPod(o: { pid: number; cmd: string[]; env: Record<string, string>; cgroup: string | null } & ExecOptions): PodProcess;
}
