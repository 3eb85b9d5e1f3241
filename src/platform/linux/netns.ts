/**
 * Pod networking with iproute2 (and nft for the optional NAT): the host
 * bridge, one named net namespace per pod, and a veth pair between them.
 * Everything is an argument array or an `ip -batch` script on stdin; values
 * reaching them are validated names and addresses. A pod's namespace, veth
 * and side of the network are made by rtnetlink instead: from the agent
 * (rtnetlink.ts) for a restored pod, from inside by the small init
 * (src/native/pod-init.c) for a pod it starts.
 */
import { lockNetwork } from "./netlock.ts";
import { existsSync, readFileSync, statSync } from "node:fs";
import { errorMessage } from "../../errors.ts";
import { run, which, type RunResult } from "./exec.ts";
import { configurePodSide, createNetnsWithVeth } from "./rtnetlink.ts";

export interface PodNetwork {
  /** Name under /run/netns. */
  netns: string;
  /** Host end of the veth pair (<= 15 characters); the pod's end is eth0. */
  hostVeth: string;
  bridge: string;
  /** The pod's address with prefix, e.g. "10.213.0.2/24". */
  address: string;
  /** The bridge's address, the pod's default route. */
  gateway: string;
  /**
   * Drop all traffic from the start (before the address is up), for a pod that
   * CRIU will restore: a peer's retransmission must not meet a closed port and
   * be answered with a reset. The restorer lifts the lock.
   */
  isLocked?: boolean;
  /** Leave the pod's side (lo, eth0's address, the default route) to the pod's init (launcher.ts). */
  isPodSideLeft?: boolean;
}

export const POD_INTERFACE = "eth0";

export function netnsPath(name: string): string {
  return `/run/netns/${name}`;
}

/** The inode of a net namespace: what CRIU's --external net[INODE] names. */
export function netnsInode(name: string): number {
  return statSync(netnsPath(name)).ino;
}

let ipPath: string | undefined;
export function ip(): string {
  return (ipPath ??= which("ip") ?? "ip");
}

export class NetworkError extends Error {
  override name = "NetworkError";
}

function failed(what: string, r: RunResult): NetworkError {
  const detail = (r.stderr || r.stdout).trim().split("\n").slice(-3).join("; ");
  return new NetworkError(`Cannot ${what}: ${detail || `ip exited with code ${r.exitCode}`}`);
}

export async function ipBatch(what: string, lines: string[], netns?: string): Promise<void> {
  const argv = netns ? [ip(), "-n", netns, "-batch", "-"] : [ip(), "-batch", "-"];
  const r = await run(argv, { stdin: lines.join("\n") + "\n", timeoutMs: 15_000 });
  if (r.exitCode !== 0) throw failed(what, r);
}

interface IpAddrJson {
  ifname: string;
  flags?: string[];
  addr_info?: Array<{ family: string; local: string; prefixlen: number }>;
}

/** The IPv4 addresses (ADDR/PREFIX) of an interface from `ip -j addr show`, or null when it does not exist. */
export function parseIpAddrJson(stdout: string): { up: boolean; addresses: string[] } | null {
  const list = JSON.parse(stdout || "[]") as IpAddrJson[];
  const link = list[0];
  if (!link) return null;
  return {
    up: (link.flags ?? []).includes("UP"),
    addresses: (link.addr_info ?? []).filter((a) => a.family === "inet").map((a) => `${a.local}/${a.prefixlen}`),
  };
}

/**
 * Make sure the bridge exists, is up and holds the gateway address. Two callers at once (pods started or
 * adopted together), or a look that failed on a loaded host, may both find it missing: the one whose add
 * then meets "File exists" (or "Address already assigned") looks again and does only what is still missing.
 */
export async function ensureBridge(bridge: string, gatewayCidr: string, isRetry = false): Promise<void> {
  const show = await run([ip(), "-j", "addr", "show", "dev", bridge], { timeoutMs: 10_000 });
  const state = show.exitCode === 0 ? parseIpAddrJson(show.stdout) : null;
  const lines: string[] = [];
  if (state === null) lines.push(`link add ${bridge} type bridge`);
  if (!state?.addresses.includes(gatewayCidr)) lines.push(`addr add ${gatewayCidr} dev ${bridge}`);
  if (!state?.up) lines.push(`link set ${bridge} up`);
  if (!lines.length) return;
  try {
    await ipBatch(`set up bridge "${bridge}"`, lines);
  } catch (e) {
    if (isRetry || !(e instanceof NetworkError) || !/File exists|already assigned/.test(e.message)) throw e;
    await ensureBridge(bridge, gatewayCidr, true);
  }
}

/** Create the pod's net namespace with loopback, eth0 with its address, and a default route via the bridge. */
export async function createPodNetwork(n: PodNetwork): Promise<void> {
  try {
    await createNamespaceAndVeth(n);
  } catch (e) {
    // Our names are unique to this agent and pod: what existed under them was a leftover of
    // a crash, and is gone now. Try once more.
    if (!(e instanceof NetworkError) || !/File exists/.test(e.message)) throw e;
    await createNamespaceAndVeth(n);
  }
  if (n.isPodSideLeft) return;
  try {
    if (n.isLocked) await lockNetwork(netnsPath(n.netns));
    try {
      configurePodSide(netnsPath(n.netns), POD_INTERFACE, n.address, n.gateway);
    } catch (e) {
      throw new NetworkError(`Cannot configure the network of "${n.netns}": ${errorMessage(e)}`, { cause: e });
    }
  } catch (e) {
    await deletePodNetwork(n).catch(() => {});
    throw e;
  }
}

/** The namespace and the veth pair on the bridge, by rtnetlink (no `ip` process: a restore waits for it). */
async function createNamespaceAndVeth(n: PodNetwork): Promise<void> {
  try {
    createNetnsWithVeth(netnsPath(n.netns), n.hostVeth, POD_INTERFACE, n.bridge);
  } catch (e) {
    await deletePodNetwork(n).catch(() => {});
    throw new NetworkError(`Cannot create net namespace "${n.netns}": ${errorMessage(e)}`, { cause: e });
  }
}

/** Whether this process's net namespace has the interface (/proc/self/net/dev: /sys/class/net shows the namespace sysfs was mounted in). */
function hasInterface(name: string): boolean {
  try {
    return readFileSync("/proc/self/net/dev", "utf8")
      .split("\n")
      .some((l) => l.trimStart().startsWith(`${name}:`));
  } catch {
    return true; // cannot tell: let `ip` decide
  }
}

/** Remove the veth pair and the namespace; what is already gone is fine. */
export async function deletePodNetwork(n: Pick<PodNetwork, "netns" | "hostVeth">): Promise<void> {
  // Nothing to run `ip` for when neither is there (a released pod about to be restored). The veth
  // goes first: a namespace being torn down must have no way out (its sockets' last packets).
  if (hasInterface(n.hostVeth)) {
    const link = await run([ip(), "link", "del", n.hostVeth], { timeoutMs: 10_000 });
    // "No such device": the pair went between the check and the delete (its namespace was torn down).
    if (link.exitCode !== 0 && !/Cannot find device|does not exist|No such device/.test(link.stderr)) throw failed(`delete interface "${n.hostVeth}"`, link);
  }
  if (existsSync(`/run/netns/${n.netns}`)) {
    const ns = await run([ip(), "netns", "del", n.netns], { timeoutMs: 10_000 });
    if (ns.exitCode !== 0 && !/No such file/.test(ns.stderr)) throw failed(`delete net namespace "${n.netns}"`, ns);
  }
}

/**
 * Outbound NAT for the pod subnet (off by default): forwarding on, and an nft
 * table of this agent's own that masquerades what leaves by another interface.
 */
export async function setNat(enabled: boolean, table: string, subnet: string, bridge: string): Promise<void> {
  const nft = which("nft");
  if (!nft) {
    if (enabled) throw new NetworkError("Cannot set up NAT: nft is not installed (apt-get install nftables)");
    return;
  }
  if (!enabled) {
    await run([nft, "delete", "table", "ip", table], { timeoutMs: 10_000 });
    return;
  }
  await Bun.write("/proc/sys/net/ipv4/ip_forward", "1");
  const script = [
    `table ip ${table} {}`,
    `flush table ip ${table}`,
    `table ip ${table} {`,
    `  chain postrouting { type nat hook postrouting priority srcnat; ip saddr ${subnet} oifname != "${bridge}" masquerade; }`,
    `}`,
  ].join("\n");
  const r = await run([nft, "-f", "-"], { stdin: script + "\n", timeoutMs: 10_000 });
  if (r.exitCode !== 0) throw failed("set up NAT", r);
}
