/**
 * Make the peers of a restored pod's TCP connections retransmit at once.
 *
 * While the pod was frozen and its network locked, each peer with unacknowledged
 * data backed its retransmission timer off (0.2, 0.6, 1.4, 3 s ... up to 120 s
 * after a long hold) and sits in loss recovery with a congestion window of one
 * segment, already used by the lost retransmission. Nothing the pod can send on
 * the connection wakes it: a window probe or duplicate ACKs are answered, but
 * neither advances snd_una nor frees the window, so the peer waits for its timer.
 * (CRIU's window probe even carries an old sequence number, so the peer drops it
 * unread.) Two things do, sent from the pod's net namespace once it is unlocked:
 * - an ACK of everything the pod received, with an acceptable sequence number:
 *   data the pod got just before the lock but never acknowledged (the ACK rode
 *   on a reply the lock dropped) is acknowledged now, which frees the peer's
 *   window and makes it send the rest at once;
 * - RFC 6069 (TCP-LD, in Linux since 2.6.37): an ICMP host-unreachable quoting
 *   the peer's segment at snd_una (now the pod's rcv_nxt) undoes one backoff step,
 *   and once the undone timeout has already passed the peer retransmits there and
 *   then. One message per step, so a burst covers any hold.
 */
import { type TcpEnds, sendRawInNetns } from "./libc.ts";

/** Enough messages to undo the deepest backoff (TCP_RTO_MAX, 120 s, is 2^9 times the 200 ms minimum). */
const STEPS = 12;
const ICMP_DEST_UNREACH = 3;
const ICMP_HOST_UNREACH = 1;
const IPPROTO_ICMP = 1;
const IPPROTO_TCP = 6;

function checksum(b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < b.length; i += 2) sum += (b[i]! << 8) | (b[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function ipv4Bytes(address: string): number[] {
  const parts = address.split(".").map(Number);
  if (parts.length !== 4 || parts.some((n) => !Number.isInteger(n) || n < 0 || n > 255))
    throw new Error(`Cannot nudge a peer of "${address}": not an IPv4 address`);
  return parts;
}

/**
 * The ICMP host-unreachable message (without IP header) quoting the segment the
 * peer (`remote`) retransmits: its IP header and the first 8 bytes of its TCP
 * header, with the sequence number the pod expects next.
 */
export function hostUnreachableFor(c: TcpEnds): Uint8Array {
  const m = new Uint8Array(8 + 20 + 8);
  const v = new DataView(m.buffer);
  m[0] = ICMP_DEST_UNREACH;
  m[1] = ICMP_HOST_UNREACH;
  const ip = m.subarray(8, 28);
  ip[0] = 0x45; // IPv4, 20-byte header
  new DataView(ip.buffer, 8).setUint16(2, 40); // total length: header and a bare TCP header
  ip[8] = 64; // TTL
  ip[9] = IPPROTO_TCP;
  ip.set(ipv4Bytes(c.remote), 12);
  ip.set(ipv4Bytes(c.local), 16);
  new DataView(ip.buffer, 8).setUint16(10, checksum(ip));
  v.setUint16(28, c.remotePort);
  v.setUint16(30, c.localPort);
  v.setUint32(32, c.rcvNxt >>> 0);
  v.setUint16(2, checksum(m));
  return m;
}

/** A bare ACK from the pod's end (TCP header only, no IP header): acknowledges rcvNxt at sequence sndNxt. */
export function ackFor(c: TcpEnds): Uint8Array {
  const optLen = c.tsVal === null ? 0 : 12;
  const seg = new Uint8Array(20 + optLen);
  const v = new DataView(seg.buffer);
  v.setUint16(0, c.localPort);
  v.setUint16(2, c.remotePort);
  v.setUint32(4, c.sndNxt >>> 0);
  v.setUint32(8, c.rcvNxt >>> 0);
  seg[12] = ((20 + optLen) / 4) << 4;
  seg[13] = 0x10; // ACK
  v.setUint16(14, c.window);
  if (c.tsVal !== null) {
    seg.set([1, 1, 8, 10], 20); // NOP, NOP, timestamps
    v.setUint32(24, c.tsVal >>> 0);
    // TSecr stays 0: the peer then takes no RTT sample from this ACK
  }
  const pseudo = new Uint8Array(12 + seg.length);
  pseudo.set(ipv4Bytes(c.local), 0);
  pseudo.set(ipv4Bytes(c.remote), 4);
  pseudo[9] = IPPROTO_TCP;
  new DataView(pseudo.buffer).setUint16(10, seg.length);
  pseudo.set(seg, 12);
  v.setUint16(16, checksum(pseudo));
  return seg;
}

/**
 * The ICMPs again this long after the first burst (ms): a peer whose socket its own process holds
 * (busy in send()) applies no ICMP to its timer, and a loaded host may hold it for a while. Late
 * ones are harmless: once the peer has moved on they quote an old sequence number and are ignored.
 * Dense early: with repeats at 30, 150 and 600 ms only, a migrated pod's client (sending every
 * millisecond, on a loaded machine) once heard the pod again 524 ms after its unlock, when its own
 * backed-off retransmission was due (bench/migrate.ts, its gap's edges against the agents' logs).
 */
const REPEATS_MS = [10, 30, 60, 100, 150, 220, 300, 400, 600];

/** Nudge each connection's peer from the pod's net namespace (its network unlocked); the ICMPs again in the background. */
export function nudgePeers(netnsPath: string, connections: readonly TcpEnds[]): void {
  if (connections.length === 0) return;
  const icmps = connections.flatMap((c) => {
    const icmp = { to: c.remote, protocol: IPPROTO_ICMP, data: hostUnreachableFor(c) };
    return Array.from({ length: STEPS }, () => icmp);
  });
  const acks = connections.map((c) => ({ to: c.remote, protocol: IPPROTO_TCP, data: ackFor(c) }));
  sendRawInNetns(netnsPath, [...acks, ...icmps]);
  for (const ms of REPEATS_MS)
    setTimeout(() => {
      try {
        sendRawInNetns(netnsPath, icmps);
      } catch {
        // the pod is gone meanwhile
      }
    }, ms).unref();
}
