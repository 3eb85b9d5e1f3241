import { describe, expect, test } from "bun:test";
import { addressRequest, defaultRouteRequest, getLinkRequest, linkUpRequest, vethRequest } from "./rtnetlink.ts";

/** Attributes from `at` to the end of `b`, by type (nested ones as their bytes). */
function attrs(b: Uint8Array, at: number): Map<number, Uint8Array> {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out = new Map<number, Uint8Array>();
  while (at < b.length) {
    const len = v.getUint16(at, true);
    out.set(v.getUint16(at + 2, true), b.subarray(at + 4, at + len));
    at += (len + 3) & ~3;
  }
  return out;
}

function header(m: Uint8Array): { len: number; type: number; flags: number; seq: number } {
  const v = new DataView(m.buffer, m.byteOffset, m.byteLength);
  return { len: v.getUint32(0, true), type: v.getUint16(4, true), flags: v.getUint16(6, true), seq: v.getUint32(8, true) };
}

const text = (b: Uint8Array | undefined) => new TextDecoder().decode(b);
const u32 = (b: Uint8Array | undefined, at = 0) => new DataView(b!.buffer, b!.byteOffset + at, 4).getUint32(0, true);

describe("rtnetlink requests", () => {
  test("the veth pair: host end up on the bridge, its peer named in the pod's namespace (by fd), as pod-init.c sends it", () => {
    const m = vethRequest(9, "apv1234", "eth0", 7, 42);
    expect(header(m)).toEqual({ len: m.length, type: 16, flags: 0x1 | 0x4 | 0x200 | 0x400, seq: 9 });
    const ifi = new DataView(m.buffer, 16, 16);
    expect([ifi.getUint32(8, true), ifi.getUint32(12, true)]).toEqual([1, 1]); // IFF_UP, changed
    const a = attrs(m, 32);
    expect(text(a.get(3))).toBe("apv1234\0");
    expect(u32(a.get(10))).toBe(7); // IFLA_MASTER
    const info = attrs(a.get(18)!, 0); // IFLA_LINKINFO
    expect(text(info.get(1))).toBe("veth");
    const peer = attrs(info.get(2)!, 0).get(1)!; // IFLA_INFO_DATA > VETH_INFO_PEER: an ifinfomsg, then attributes
    const p = attrs(peer, 16);
    expect(text(p.get(3))).toBe("eth0\0");
    expect(u32(p.get(28))).toBe(42); // IFLA_NET_NS_FD
  });

  test("address, link up, link lookup and the default route on-link", () => {
    const addr = addressRequest(1, 2, "10.213.5.7/24");
    expect(header(addr).type).toBe(20);
    expect([addr[16], addr[17], u32(addr, 20)]).toEqual([2, 24, 2]); // AF_INET, /24, index 2
    const a = attrs(addr, 24);
    expect([...a.get(2)!]).toEqual([10, 213, 5, 7]);
    expect([...a.get(1)!]).toEqual([10, 213, 5, 7]);
    const route = defaultRouteRequest(2, 2, "10.213.5.1");
    expect([header(route).type, route[16], route[17], route[20], route[23], u32(route, 24)]).toEqual([24, 2, 0, 254, 1, 4]); // default, main, unicast, onlink
    const r = attrs(route, 28);
    expect([...r.get(5)!]).toEqual([10, 213, 5, 1]);
    expect(u32(r.get(4))).toBe(2);
    const up = linkUpRequest(3, 5);
    expect([header(up).type, new DataView(up.buffer).getInt32(20, true)]).toEqual([16, 5]);
    expect(text(attrs(getLinkRequest(4, "lo"), 32).get(3))).toBe("lo\0");
  });

  test("names and addresses that are not what they should be are refused", () => {
    expect(() => vethRequest(1, "a b", "eth0", 1, 3)).toThrow('Invalid interface name "a b"');
    expect(() => vethRequest(1, "much-too-long-name", "eth0", 1, 3)).toThrow("Invalid interface name");
    expect(() => addressRequest(1, 2, "10.0.0.300/24")).toThrow('Invalid IPv4 address "10.0.0.300"');
    expect(() => addressRequest(1, 2, "10.0.0.3/33")).toThrow('Invalid address "10.0.0.3/33"');
    expect(() => defaultRouteRequest(1, 2, "fe80::1")).toThrow('Invalid IPv4 address "fe80::1"');
  });
});
