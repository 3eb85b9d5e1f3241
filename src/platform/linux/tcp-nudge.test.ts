import { describe, expect, test } from "bun:test";
import { ackFor, hostUnreachableFor } from "./tcp-nudge.ts";

const CONN = {
  local: "10.0.0.129",
  localPort: 7000,
  remote: "10.0.0.250",
  remotePort: 41894,
  rcvNxt: 0xfffffff0,
  sndNxt: 3493355231,
  window: 63,
  tsVal: 2817120668,
};

/** The Internet checksum of bytes that include their own checksum: 0 when it is right. */
function verify(b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < b.length; i += 2) sum += (b[i]! << 8) | (b[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

describe("hostUnreachableFor", () => {
  test("an ICMP host-unreachable quoting the peer's segment at the pod's rcv_nxt", () => {
    const m = hostUnreachableFor(CONN);
    const v = new DataView(m.buffer);
    expect([m[0], m[1], m.length]).toEqual([3, 1, 36]);
    expect(verify(m)).toBe(0);
    expect(verify(m.subarray(8, 28))).toBe(0); // the quoted IP header
    expect([...m.subarray(20, 24)].join(".")).toBe("10.0.0.250"); // from the peer
    expect([...m.subarray(24, 28)].join(".")).toBe("10.0.0.129"); // to the pod
    expect([v.getUint16(28), v.getUint16(30), v.getUint32(32)]).toEqual([41894, 7000, 0xfffffff0]);
  });
  test("refuses what is not IPv4", () => {
    expect(() => hostUnreachableFor({ ...CONN, remote: "fe80::1" })).toThrow('Cannot nudge a peer of "fe80::1": not an IPv4 address');
  });
});

describe("ackFor", () => {
  test("a bare ACK of rcv_nxt at snd_nxt, with the timestamp, its checksum over the pseudo-header", () => {
    const seg = ackFor(CONN);
    const v = new DataView(seg.buffer);
    expect(seg.length).toBe(32);
    expect([v.getUint16(0), v.getUint16(2), v.getUint32(4), v.getUint32(8)]).toEqual([7000, 41894, 3493355231, 0xfffffff0]);
    expect([seg[12]! >> 4, seg[13], v.getUint16(14)]).toEqual([8, 0x10, 63]);
    expect([...seg.subarray(20, 24)]).toEqual([1, 1, 8, 10]);
    expect([v.getUint32(24), v.getUint32(28)]).toEqual([2817120668, 0]);
    const pseudo = new Uint8Array([10, 0, 0, 129, 10, 0, 0, 250, 0, 6, 0, seg.length, ...seg]);
    expect(verify(pseudo)).toBe(0);
  });
  test("without timestamps, the bare 20-byte header", () => {
    const seg = ackFor({ ...CONN, tsVal: null });
    expect([seg.length, seg[12]! >> 4]).toEqual([20, 5]);
  });
});
