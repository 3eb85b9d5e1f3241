/**
 * The routed pod network (network.mode = "routed"), as Calico and QEMU do it:
 * a pod's eth0 has its address as a /32 and its default route via a
 * link-local gateway (169.254.1.1, the same on every host, never on the
 * wire), which the host end of its veth holds; that veth is
 * on no bridge, and the host routes the pod's /32 to it. With forwarding on,
 * and proxy ARP on the LAN interface, the host answers ARP on the LAN for the
 * pods it runs; when a pod arrives (started or restored), the host announces
 * it with gratuitous ARP. When it leaves, its veth goes and the route with it.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { lockNetwork } from "./netlock.ts";
import { run } from "./exec.ts";
import { parseMac, sendGratuitousArp } from "./garp.ts";
import { ethernetInterface } from "./libc.ts";
import { parseIPv4 } from "../../pods/address.ts";
import { deletePodNetwork, ip, ipBatch, NetworkError, POD_INTERFACE, type PodNetwork } from "./netns.ts";

/** Gratuitous ARPs per arrival, and the time between them. */
export const ANNOUNCE_COUNT = 3;
export const ANNOUNCE_SPACING_MS = 100;

function checkInterface(name: string): void {
  if (!/^[a-zA-Z0-9_.-]{1,15}$/.test(name) || name === "." || name === "..") throw new NetworkError(`Invalid interface name "${name}"`);
}

function setSysctl(path: string, value: string): void {
  try {
    if (readFileSync(path, "utf8").trim() === value) return;
    writeFileSync(path, value);
  } catch (e) {
    throw new NetworkError(`Cannot set ${path.replace("/proc/sys/", "").replaceAll("/", ".")} = ${value}: ${(e as Error).message}`);
  }
}

/** The LAN interface's index and MAC address (ioctls, no `ip` process: a migration's restore announces while the pod is frozen). */
export async function lanLink(lan: string): Promise<{ ifindex: number; mac: Uint8Array }> {
  checkInterface(lan);
  const link = ethernetInterface(lan);
  if (link) return link;
  // Missing, or not Ethernet: `ip` tells which.
  const r = await run([ip(), "-j", "link", "show", "dev", lan], { timeoutMs: 10_000 });
  if (r.exitCode !== 0) throw new NetworkError(`The LAN interface "${lan}" does not exist (network.lan_interface)`);
  const shown = (JSON.parse(r.stdout || "[]") as Array<{ ifindex?: number; address?: string }>)[0];
  const mac = parseMac(shown?.address ?? "");
  if (!shown?.ifindex || !mac) throw new NetworkError(`The LAN interface "${lan}" has no Ethernet address`);
  return { ifindex: shown.ifindex, mac };
}

/**
 * Forwarding on; proxy ARP on the LAN interface, answering at once (the
 * kernel otherwise delays proxy replies to broadcast requests by up to 0.8 s).
 * Idempotent; throws when the interface does not exist.
 */
export async function enableRoutedHost(lan: string): Promise<void> {
  await lanLink(lan);
  setSysctl("/proc/sys/net/ipv4/ip_forward", "1");
  setSysctl(`/proc/sys/net/ipv4/conf/${lan}/proxy_arp`, "1");
  setSysctl(`/proc/sys/net/ipv4/neigh/${lan}/proxy_delay`, "0");
}

/**
 * Tell the LAN this host now answers for `address` (dotted IPv4): the first
 * gratuitous ARP before this resolves, the others in the background.
 */
export async function announce(lan: string, address: string): Promise<void> {
  const { ifindex, mac } = await lanLink(lan);
  sendGratuitousArp(ifindex, mac, address);
  void (async () => {
    for (let i = 1; i < ANNOUNCE_COUNT; i++) {
      await Bun.sleep(ANNOUNCE_SPACING_MS);
      try {
        sendGratuitousArp(ifindex, mac, address);
      } catch {
        // the interface went away: nothing to announce on
      }
    }
  })();
}

/**
 * The pod's net namespace and veth, routed: eth0 ADDR/32 with `default via
 * 169.254.1.1 dev eth0 onlink`, the host's veth holding 169.254.1.1 and the
 * /32 route to the pod, then the announcement on the LAN. With isLocked, the
 * namespace drops everything from before its address is up.
 */
export async function createRoutedPodNetwork(n: PodNetwork & { lanInterface: string }): Promise<void> {
  checkInterface(n.hostVeth);
  const [addr] = n.address.split("/");
  if (!n.address.endsWith("/32") || parseIPv4(addr ?? "") === null) throw new NetworkError(`A routed pod's address must be a /32, not "${n.address}"`);
  if (parseIPv4(n.gateway) === null) throw new NetworkError(`Invalid gateway "${n.gateway}"`);
  await enableRoutedHost(n.lanInterface);
  const create = () =>
    ipBatch(`create net namespace "${n.netns}"`, [
      `netns add ${n.netns}`,
      `link add ${n.hostVeth} type veth peer name ${POD_INTERFACE} netns ${n.netns}`,
      `addr add ${n.gateway}/32 dev ${n.hostVeth} scope link`,
      `link set ${n.hostVeth} up`,
      `route replace ${n.address} dev ${n.hostVeth} scope link`,
    ]);
  try {
    try {
      await create();
    } catch (e) {
      // A leftover of a crash under our names: gone now, try once more.
      await deletePodNetwork(n).catch(() => {});
      if (!(e instanceof NetworkError) || !/File exists/.test(e.message)) throw e;
      await create();
    }
    if (n.isLocked) await lockNetwork(`/run/netns/${n.netns}`);
    if (!n.isPodSideLeft)
      await ipBatch(
        `configure the network of "${n.netns}"`,
        [
          "link set lo up",
          `addr add ${n.address} dev ${POD_INTERFACE}`,
          `link set ${POD_INTERFACE} up`,
          `route add default via ${n.gateway} dev ${POD_INTERFACE} onlink`,
        ],
        n.netns,
      );
    await announce(n.lanInterface, addr!);
  } catch (e) {
    await deletePodNetwork(n).catch(() => {});
    throw e;
  }
}
