/** IPv4 pod addresses: parsing, subnet membership and allocation. Pure. */

export interface Subnet {
  /** Network address as a 32-bit number. */
  network: number;
  prefix: number;
  /**
   * Routed pod network (network.mode = "routed"): no bridge takes an address,
   * and each pod's address is a /32 routed to it on the host that runs it.
   */
  routed?: boolean;
}

/** The prefix a pod's address carries: the subnet's on a bridge, 32 when routed. */
export function podPrefixOf(s: Subnet): number {
  return s.routed ? 32 : s.prefix;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;

export function parseIPv4(s: string): number | null {
  if (!IPV4.test(s)) return null;
  return s.split(".").reduce((acc, part) => acc * 256 + Number(part), 0);
}

export function formatIPv4(n: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join(".");
}

/** "10.213.0.0/24" -> the subnet; the host bits are cleared. */
export function parseSubnet(cidr: string): Subnet | null {
  const [ip, len, ...more] = cidr.split("/");
  const addr = parseIPv4(ip ?? "");
  if (more.length || addr === null || len === undefined || !/^\d{1,2}$/.test(len) || +len > 32) return null;
  const size = 2 ** (32 - +len);
  return { network: addr - (addr % size), prefix: +len };
}

function size(s: Subnet): number {
  return 2 ** (32 - s.prefix);
}

export function inSubnet(s: Subnet, addr: number): boolean {
  return addr >= s.network && addr < s.network + size(s);
}

/** The bridge's address: the first host address. */
export function gatewayOf(s: Subnet): number {
  return s.network + 1;
}

/** Why an address cannot be a pod's in this subnet, or null when it can. */
export function whyNotPodAddress(s: Subnet, addr: number): string | null {
  if (!inSubnet(s, addr)) return "is outside the pod subnet";
  if (addr === s.network) return "is the subnet's network address";
  if (addr === s.network + size(s) - 1) return "is the subnet's broadcast address";
  if (!s.routed && addr === gatewayOf(s)) return "is the bridge's address";
  return null;
}

/** The lowest free pod address, or null when the subnet is full. */
export function allocateAddress(s: Subnet, used: ReadonlySet<number>): number | null {
  for (let a = s.routed ? s.network + 1 : gatewayOf(s) + 1; a < s.network + size(s) - 1; a++) if (!used.has(a)) return a;
  return null;
}

export function formatSubnet(s: Subnet): string {
  return `${formatIPv4(s.network)}/${s.prefix}`;
}
