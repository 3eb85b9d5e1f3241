/**
 * Gratuitous ARP: "ADDR is at MAC", broadcast on the LAN by the host that now
 * answers for a pod's address (routed pod network), so the LAN's machines
 * move their ARP entry for it at once instead of sending to the host that ran
 * the pod before. Linux takes an ARP request whose sender and target address
 * are the same as a gratuitous one and updates an existing entry with it,
 * even within its locktime. Sent from an AF_PACKET socket: no helper binary,
 * and no need for the address to be one of the host's own (arping binds to it).
 */
import { sendFrames } from "./libc.ts";
import { parseIPv4 } from "../../pods/address.ts";

const ETH_P_ARP = 0x0806;
const BROADCAST = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);

/** "aa:bb:cc:dd:ee:ff" -> 6 bytes; null when it is not a MAC address. */
export function parseMac(s: string): Uint8Array | null {
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(s)) return null;
  return new Uint8Array(s.split(":").map((h) => Number.parseInt(h, 16)));
}

/** The 42-byte Ethernet frame of a gratuitous ARP request for `address` (dotted IPv4) from `mac`. */
export function gratuitousArpFrame(mac: Uint8Array, address: string): Uint8Array {
  const ip = parseIPv4(address);
  if (ip === null || mac.length !== 6) throw new Error(`Cannot announce "${address}": not an IPv4 address and a MAC address`);
  const f = new Uint8Array(42);
  const v = new DataView(f.buffer);
  f.set(BROADCAST, 0);
  f.set(mac, 6);
  v.setUint16(12, ETH_P_ARP);
  v.setUint16(14, 1); // hardware: Ethernet
  v.setUint16(16, 0x0800); // protocol: IPv4
  f[18] = 6;
  f[19] = 4;
  v.setUint16(20, 1); // request
  f.set(mac, 22); // sender MAC
  v.setUint32(28, ip); // sender IP
  // target MAC stays zero
  v.setUint32(38, ip); // target IP = sender IP: gratuitous
  return f;
}

/** Broadcast one gratuitous ARP request for `address` out of the interface. */
export function sendGratuitousArp(ifindex: number, mac: Uint8Array, address: string): void {
  sendFrames(ifindex, ETH_P_ARP, BROADCAST, [gratuitousArpFrame(mac, address)]);
}
