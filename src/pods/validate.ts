/**
 * Turning a create request into a PodSpec: every check that must pass before
 * anything on the host changes. Throws InvalidArgumentError with what was
 * wrong and the value.
 */
import { isAbsolute, normalize } from "node:path";
import { InvalidArgumentError, PreconditionError } from "../errors.ts";
import { quote } from "../quote.ts";
import type { PodHost } from "../platform/pod-host.ts";
import { type ProtectedPaths, whyHostPathIsProtected } from "./host-dirs.ts";
import { allocateAddress, formatIPv4, formatSubnet, parseIPv4, podPrefixOf, type Subnet, whyNotPodAddress } from "./address.ts";
import { formatBytes, MAX_ID, POD_NAME, type PodSpec, type PodUser, podEnvironment, type VolumeSpec } from "./pod.ts";

/** What a client asks for. Host paths are absolute (the CLI resolves them). */
export interface CreatePodRequest {
  name: string;
  rootfs: string;
  cmd: string[];
  /** "ADDR/PREFIX" or "ADDR"; allocated from the subnet when absent. */
  address?: string;
  hostname?: string;
  volumes?: VolumeSpec[];
  env?: Record<string, string>;
  memoryBytes?: number | null;
  /** CPUs' worth of time (1.5: one and a half CPUs). */
  cpus?: number | null;
  /** At most this many processes (and threads) in the pod. */
  pidsMax?: number | null;
  workdir?: string;
  /** false: the pod may use every feature of this host's CPU, not only the cluster's baseline (its images then restore only on hosts with them). */
  cpuBaseline?: boolean;
  /** The user the command runs as (default root). */
  user?: PodUser;
}

/** --cpus: from a hundredth of a CPU (the kernel's quota floor is 1 ms per 100 ms period) up. */
export const MIN_CPUS = 0.01;
export const MAX_CPUS = 4096;
/**
 * --pids-max: starting a pod has two processes in its cgroup at once
 * (unshare and pod-init), an exec two more (nsenter and the command).
 */
export const MIN_PIDS = 4;
/** The kernel's largest pid_max. */
export const MAX_PIDS = 4_194_304;

/**
 * Starting a pod runs unshare and autopod's pod-init in the pod's memory cgroup: measured, their
 * peak is about 5 MiB (4.9-5.3 MiB here, cgroup v1 max_usage), and 4 MiB fails in unshare
 * ("sigprocmask unblock failed"); a CRIU restore peaks at about 4 MiB. 8 MiB leaves a margin.
 */
export const MIN_MEMORY_BYTES = 8 * 2 ** 20;
const HOSTNAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
// Mounted by pod-init after the volumes, so a volume there would be hidden.
const RESERVED = ["/proc", "/dev", "/tmp"];

export function checkPodName(name: string): void {
  if (!POD_NAME.test(name)) {
    throw new InvalidArgumentError(`Invalid pod name ${quote(name)}: use 1 to 63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
}

function podPath(what: string, p: string): string {
  if (!isAbsolute(p) || p.split("/").includes("..")) throw new InvalidArgumentError(`${what} ${quote(p)} must be an absolute path without ".."`);
  return normalize(p).replace(/(.)\/+$/, "$1");
}

/** Validate everything that does not depend on other pods. */
export function checkRequest(
  req: CreatePodRequest,
  host: PodHost,
  opts: { layer: "overlay" | "copy"; hasMemoryCgroup: boolean; protect: ProtectedPaths },
): Omit<PodSpec, "address"> {
  const canonical = (p: string) => {
    try {
      return host.realPath(p);
    } catch {
      return p;
    }
  };
  checkPodName(req.name);

  if (!isAbsolute(req.rootfs)) throw new InvalidArgumentError(`Root file system ${quote(req.rootfs)} must be an absolute path`);
  const kind = host.pathKind(req.rootfs);
  if (kind === null) throw new InvalidArgumentError(`Root file system ${quote(req.rootfs)} does not exist`);
  if (kind !== "dir") throw new InvalidArgumentError(`Root file system ${quote(req.rootfs)} is not a directory`);
  const rootfs = host.realPath(req.rootfs);
  const whyRoot = whyHostPathIsProtected(rootfs, "Root file system", opts.protect, canonical, true);
  if (whyRoot) throw new InvalidArgumentError(`${whyRoot}${rootfs === req.rootfs ? "" : ` (given as ${quote(req.rootfs)})`}`);
  if (opts.layer === "overlay" && /[,:\\\n]/.test(rootfs)) {
    throw new InvalidArgumentError(`Root file system ${quote(rootfs)} has ',', ':' or '\\' in its path, which overlayfs cannot take`);
  }

  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.env ?? {})) {
    if (!ENV_KEY.test(k)) throw new InvalidArgumentError(`Invalid environment variable name ${quote(k)}`);
    if (v.includes("\0")) throw new InvalidArgumentError(`Environment variable ${quote(k)} holds a NUL byte`);
    env[k] = v;
  }

  const hostname = req.hostname ?? req.name;
  if (!HOSTNAME.test(hostname)) throw new InvalidArgumentError(`Invalid hostname ${quote(hostname)}: 1 to 64 letters, digits, '.', '_' or '-'`);

  const volumes: VolumeSpec[] = [];
  for (const v of req.volumes ?? []) {
    if (!isAbsolute(v.host)) throw new InvalidArgumentError(`Volume path ${quote(v.host)} must be an absolute path`);
    if (host.pathKind(v.host) === null) throw new InvalidArgumentError(`Volume path ${quote(v.host)} does not exist`);
    const at = podPath("Volume mount point", v.pod);
    if (at === "/" || RESERVED.some((r) => at === r || at.startsWith(r + "/"))) {
      throw new InvalidArgumentError(`Volume mount point ${quote(at)} is not allowed: the pod's own /, /proc, /dev and /tmp go there`);
    }
    if (volumes.some((o) => o.pod === at)) throw new InvalidArgumentError(`Two volumes are mounted at ${quote(at)}`);
    const real = host.realPath(v.host);
    const why = whyHostPathIsProtected(real, "Volume path", opts.protect, canonical);
    if (why) throw new InvalidArgumentError(`${why}${real === v.host ? "" : ` (given as ${quote(v.host)})`}`);
    volumes.push({ host: real, pod: at, readonly: v.readonly });
  }

  const workdir = podPath("Working directory", req.workdir ?? "/");

  if (req.cmd.length === 0 || !req.cmd[0]) throw new InvalidArgumentError("No command: give the pod's command after --");
  if (req.cmd.some((a) => a.includes("\0"))) throw new InvalidArgumentError("The command holds a NUL byte");
  const pathVar = podEnvironment({ env, hostname }).PATH!;
  if (!commandExists(host, rootfs, volumes, req.cmd[0], pathVar)) {
    throw new InvalidArgumentError(
      `Command ${quote(req.cmd[0])} is not in the root file system ${quote(rootfs)}${req.cmd[0].includes("/") ? "" : ` (looked on PATH ${pathVar})`}`,
    );
  }

  let memoryBytes: number | null = null;
  if (req.memoryBytes !== undefined && req.memoryBytes !== null) {
    if (!Number.isInteger(req.memoryBytes) || req.memoryBytes < MIN_MEMORY_BYTES) {
      throw new InvalidArgumentError(
        `Memory limit ${formatBytes(req.memoryBytes)} is too small: at least ${formatBytes(MIN_MEMORY_BYTES)} (starting a pod takes about 5 MiB in its cgroup)`,
      );
    }
    if (!opts.hasMemoryCgroup) throw new PreconditionError("Cannot limit memory: this host has no memory cgroup controller");
    memoryBytes = req.memoryBytes;
  }

  let cpus: number | null = null;
  if (req.cpus !== undefined && req.cpus !== null) {
    if (!Number.isFinite(req.cpus) || req.cpus < MIN_CPUS || req.cpus > MAX_CPUS) {
      throw new InvalidArgumentError(`CPU limit ${quote(String(req.cpus))} is out of range: ${MIN_CPUS} to ${MAX_CPUS} CPUs`);
    }
    if (!opts.hasMemoryCgroup || !host.hasCgroupController("cpu")) throw new PreconditionError("Cannot limit CPU time: this host has no cpu cgroup controller");
    cpus = req.cpus;
  }
  let pidsMax: number | null = null;
  if (req.pidsMax !== undefined && req.pidsMax !== null) {
    if (!Number.isInteger(req.pidsMax) || req.pidsMax < MIN_PIDS || req.pidsMax > MAX_PIDS) {
      throw new InvalidArgumentError(
        `Process limit ${quote(String(req.pidsMax))} is out of range: ${MIN_PIDS} to ${MAX_PIDS} (starting the pod and each exec take two of it)`,
      );
    }
    if (!opts.hasMemoryCgroup || !host.hasCgroupController("pids"))
      throw new PreconditionError("Cannot limit processes: this host has no pids cgroup controller");
    pidsMax = req.pidsMax;
  }

  const user = req.user === undefined ? undefined : checkUser(req.user);

  return { name: req.name, rootfs, cmd: req.cmd, env, hostname, volumes, memoryBytes, cpus, pidsMax, workdir, ...(user ? { user } : {}) };
}

function checkUser(u: PodUser): PodUser {
  const isId = (n: number) => Number.isInteger(n) && n >= 0 && n <= MAX_ID;
  if (!isId(u.uid)) throw new InvalidArgumentError(`Invalid user id ${quote(String(u.uid))}: expected a number from 0 to ${MAX_ID}`);
  if (u.gid !== null && !isId(u.gid)) throw new InvalidArgumentError(`Invalid group id ${quote(String(u.gid))}: expected a number from 0 to ${MAX_ID}`);
  return { uid: u.uid, gid: u.gid };
}

/** The command is in the base, or in a volume that covers its path. */
function commandExists(host: PodHost, rootfs: string, volumes: VolumeSpec[], cmd: string, pathVar: string): boolean {
  if (host.findExecutable(rootfs, cmd, pathVar) !== null) return true;
  const candidates = cmd.includes("/")
    ? [normalize("/" + cmd)]
    : pathVar
        .split(":")
        .filter(Boolean)
        .map((d) => `${d}/${cmd}`);
  for (const c of candidates) {
    for (const v of volumes) {
      if (c.startsWith(v.pod + "/") && host.findExecutable(v.host, c.slice(v.pod.length), pathVar) !== null) return true;
    }
  }
  return false;
}

/** An address that cannot be the pod's: malformed, outside the subnet, or taken. */
export class AddressError extends InvalidArgumentError {
  override name = "AddressError";
}

/**
 * The pod's address: the one asked for, if it is a free pod address of the
 * subnet with the subnet's prefix, else the lowest free one.
 */
export function chooseAddress(asked: string | undefined, subnet: Subnet, used: ReadonlySet<number>): string {
  const subnetText = formatSubnet(subnet);
  if (asked === undefined) {
    const a = allocateAddress(subnet, used);
    if (a === null) throw new PreconditionError(`No free address left in the pod subnet ${subnetText}`);
    return `${formatIPv4(a)}/${podPrefixOf(subnet)}`;
  }
  const [ip, prefix, ...more] = asked.split("/");
  const addr = parseIPv4(ip ?? "");
  if (addr === null || more.length || (prefix !== undefined && !/^\d{1,2}$/.test(prefix))) {
    throw new AddressError(`Invalid address ${quote(asked)}: expected ADDR/PREFIX, like 10.213.0.5/24`);
  }
  if (prefix !== undefined && Number(prefix) !== podPrefixOf(subnet)) {
    throw new AddressError(
      subnet.routed
        ? `Address ${quote(asked)} must be a /32 in the routed pod network (pod subnet ${subnetText})`
        : `Address ${quote(asked)} must have the pod subnet's prefix /${subnet.prefix} (${subnetText})`,
    );
  }
  const why = whyNotPodAddress(subnet, addr);
  if (why) throw new AddressError(`Address ${quote(asked)} ${why} (pod subnet ${subnetText})`);
  if (used.has(addr)) throw new AddressError(`Address ${quote(asked)} is in use by another pod`);
  return `${formatIPv4(addr)}/${podPrefixOf(subnet)}`;
}
