/**
 * A pod's net namespace and veth pair, and its side of the network, made
 * through rtnetlink from the agent (as the small init does from inside the
 * pod: src/native/pod-init.c), where `ip -batch` was two processes per pod
 * on a restore's path. Building the messages is pure (rtnetlink.test.ts);
 * sending them is libc's netlinkExchange.
 */
import { closeSync, existsSync, mkdirSync, openSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";
import { Errno, errnoText, interfaceIndex, MS, makeNetns, mount, netlinkExchange } from "./libc.ts";
import { attr, concat } from "./netlink.ts";

const NETLINK_ROUTE = 0;
const RTM_NEWLINK = 16;
const RTM_GETLINK = 18;
const RTM_NEWADDR = 20;
const RTM_NEWROUTE = 24;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;
const NLMSG_ERROR = 2;
const AF_UNSPEC = 0;
const AF_INET = 2;
const IFF_UP = 1;
const IFLA_IFNAME = 3;
const IFLA_MASTER = 10;
const IFLA_LINKINFO = 18;
const IFLA_NET_NS_FD = 28;
const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
const VETH_INFO_PEER = 1;
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const RTA_GATEWAY = 5;
const RTA_OIF = 4;
const RT_TABLE_MAIN = 254;
const RTPROT_BOOT = 3;
const RT_SCOPE_UNIVERSE = 0;
const RTN_UNICAST = 1;
const RTNH_F_ONLINK = 4;
const IFINFOMSG_BYTES = 16;

/** An error of the kernel's for a request: its text is strerror's ("File exists"). */
export class RtnetlinkError extends Error {
  override name = "RtnetlinkError";
  constructor(
    readonly errno: number,
    what: string,
  ) {
    super(`${what}: ${errnoText(errno)}`);
  }
}

function name(s: string): Uint8Array {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(s)) throw new Error(`Invalid interface name "${s}"`);
  return new TextEncoder().encode(`${s}\0`);
}

function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
}

function ipv4(address: string): Uint8Array {
  const parts = address.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new Error(`Invalid IPv4 address "${address}"`);
  return new Uint8Array(parts);
}

function ifinfomsg(index: number, flags: number, change: number): Uint8Array {
  const m = new Uint8Array(IFINFOMSG_BYTES);
  const v = new DataView(m.buffer);
  m[0] = AF_UNSPEC;
  v.setInt32(4, index, true);
  v.setUint32(8, flags, true);
  v.setUint32(12, change, true);
  return m;
}

/** One request: header (REQUEST|ACK and `flags`), then its fixed part and attributes. */
function request(type: number, flags: number, seq: number, body: Uint8Array[]): Uint8Array {
  const b = concat(body);
  const m = new Uint8Array(16 + b.length);
  const v = new DataView(m.buffer);
  v.setUint32(0, m.length, true);
  v.setUint16(4, type, true);
  v.setUint16(6, NLM_F_REQUEST | NLM_F_ACK | flags, true);
  v.setUint32(8, seq, true);
  m.set(b, 16);
  return m;
}

/** `ip link add HOST type veth peer name PEER netns NSFD` with HOST up on the bridge (index `master`). */
export function vethRequest(seq: number, host: string, peer: string, master: number, netnsFd: number): Uint8Array {
  const peerInfo = concat([ifinfomsg(0, 0, 0), attr(IFLA_IFNAME, name(peer)), attr(IFLA_NET_NS_FD, u32(netnsFd))]);
  const linkInfo = concat([attr(IFLA_INFO_KIND, new TextEncoder().encode("veth")), attr(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peerInfo))]);
  return request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, seq, [
    ifinfomsg(0, IFF_UP, IFF_UP),
    attr(IFLA_IFNAME, name(host)),
    attr(IFLA_MASTER, u32(master)),
    attr(IFLA_LINKINFO, linkInfo),
  ]);
}

/** `ip link show NAME` (its answer carries the index). */
export function getLinkRequest(seq: number, ifname: string): Uint8Array {
  return request(RTM_GETLINK, 0, seq, [ifinfomsg(0, 0, 0), attr(IFLA_IFNAME, name(ifname))]);
}

/** `ip link set INDEX up`. */
export function linkUpRequest(seq: number, index: number): Uint8Array {
  return request(RTM_NEWLINK, 0, seq, [ifinfomsg(index, IFF_UP, IFF_UP)]);
}

/** `ip addr add ADDR/PREFIX dev INDEX`. */
export function addressRequest(seq: number, index: number, cidr: string): Uint8Array {
  const [addr, prefix] = cidr.split("/");
  const bits = Number(prefix);
  if (!Number.isInteger(bits) || bits < 0 || bits > 32) throw new Error(`Invalid address "${cidr}"`);
  const ifa = new Uint8Array(8); // family, prefixlen, flags, scope, index
  ifa[0] = AF_INET;
  ifa[1] = bits;
  ifa[3] = RT_SCOPE_UNIVERSE;
  new DataView(ifa.buffer).setUint32(4, index, true);
  const a = ipv4(addr ?? "");
  return request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, seq, [ifa, attr(IFA_LOCAL, a), attr(IFA_ADDRESS, a)]);
}

/** `ip route add default via GATEWAY dev INDEX onlink` (a routed pod's /32 has no subnet holding its gateway). */
export function defaultRouteRequest(seq: number, index: number, gateway: string): Uint8Array {
  const rtm = new Uint8Array(12); // family, dst_len, src_len, tos, table, protocol, scope, type, flags
  rtm[0] = AF_INET;
  rtm[4] = RT_TABLE_MAIN;
  rtm[5] = RTPROT_BOOT;
  rtm[6] = RT_SCOPE_UNIVERSE;
  rtm[7] = RTN_UNICAST;
  new DataView(rtm.buffer).setUint32(8, RTNH_F_ONLINK, true);
  return request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, seq, [rtm, attr(RTA_GATEWAY, ipv4(gateway)), attr(RTA_OIF, u32(index))]);
}

let nextSeq = 1;

/** Send requests (seq from the builder) in one write; throws the first error, naming its step. Returns every answer. */
function exchange(netnsPath: string | null, steps: ReadonlyArray<{ what: string; build: (seq: number) => Uint8Array }>): Uint8Array[] {
  const seqs = steps.map(() => nextSeq++ % 0x7fff_0000);
  const replies = netlinkExchange(netnsPath, NETLINK_ROUTE, concat(steps.map((s, i) => s.build(seqs[i]!))), seqs);
  for (const r of replies) {
    const v = new DataView(r.buffer, r.byteOffset, r.byteLength);
    if (r.length < 20 || v.getUint16(4, true) !== NLMSG_ERROR) continue;
    const errno = -v.getInt32(16, true);
    const i = seqs.indexOf(v.getUint32(8, true));
    if (errno !== 0 && i >= 0) throw new RtnetlinkError(errno, steps[i]!.what);
  }
  return replies;
}

/** /run/netns as `ip netns add` leaves it: a shared mount point, so a namespace bound in it shows in every mount namespace. */
function shareNetnsDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  try {
    mount("", dir, "none", MS.SHARED | MS.REC);
  } catch (e) {
    if (!(e instanceof Errno) || e.errno !== 22) throw e; // EINVAL: not a mount point yet
    mount(dir, dir, "none", MS.BIND | MS.REC);
    mount("", dir, "none", MS.SHARED | MS.REC);
  }
}

/** `ip netns add NAME` (at `netnsPath`) and the veth pair: `hostVeth` up on `bridge`, its peer `podVeth` in the namespace. */
export function createNetnsWithVeth(netnsPath: string, hostVeth: string, podVeth: string, bridge: string): void {
  const master = interfaceIndex(bridge);
  if (master === null) throw new RtnetlinkError(19, `find bridge "${bridge}"`); // ENODEV
  shareNetnsDir(dirname(netnsPath));
  if (existsSync(netnsPath)) throw new RtnetlinkError(17, `create net namespace "${netnsPath}"`); // EEXIST, as ip says
  closeSync(openSync(netnsPath, "wx", 0));
  try {
    makeNetns(netnsPath);
  } catch (e) {
    unlinkSync(netnsPath);
    throw e;
  }
  const fd = openSync(netnsPath, "r");
  try {
    exchange(null, [{ what: `create the veth pair "${hostVeth}"`, build: (seq) => vethRequest(seq, hostVeth, podVeth, master, fd) }]);
  } finally {
    closeSync(fd);
  }
}

/** The index of a link in the namespace at `netnsPath`, from its RTM_NEWLINK answer. */
function linkIndexIn(netnsPath: string, ifname: string): number {
  const replies = exchange(netnsPath, [{ what: `find "${ifname}"`, build: (seq) => getLinkRequest(seq, ifname) }]);
  const link = replies.find((r) => r.length >= 32 && new DataView(r.buffer, r.byteOffset).getUint16(4, true) === RTM_NEWLINK);
  if (!link) throw new RtnetlinkError(19, `find "${ifname}"`);
  return new DataView(link.buffer, link.byteOffset).getInt32(16 + 4, true);
}

/** The pod's side: lo up, `ifname` with its address and up, the default route via the gateway. */
export function configurePodSide(netnsPath: string, ifname: string, cidr: string, gateway: string): void {
  const lo = linkIndexIn(netnsPath, "lo");
  const dev = linkIndexIn(netnsPath, ifname);
  exchange(netnsPath, [
    { what: "set lo up", build: (seq) => linkUpRequest(seq, lo) },
    { what: `add address ${cidr} to ${ifname}`, build: (seq) => addressRequest(seq, dev, cidr) },
    { what: `set ${ifname} up`, build: (seq) => linkUpRequest(seq, dev) },
    { what: `add the default route via ${gateway}`, build: (seq) => defaultRouteRequest(seq, dev, gateway) },
  ]);
}
