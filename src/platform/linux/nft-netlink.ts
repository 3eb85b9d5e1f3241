/**
 * nf_tables through its netlink interface (NETLINK_NETFILTER), for the pod
 * network lock: one batch sent from a socket opened in the pod's net
 * namespace, where `nsenter` and `nft` were two processes started per call
 * (on a restore's path, three times). The messages are what `nft -f` sends
 * for the same rules; building them is pure (table tests in
 * nft-netlink.test.ts), sending them is libc's netlinkExchange.
 */
import { errnoText, netlinkExchange } from "./libc.ts";

const NETLINK_NETFILTER = 12;
const NFNL_SUBSYS_NFTABLES = 10;
const NFNL_MSG_BATCH_BEGIN = 0x10;
const NFNL_MSG_BATCH_END = 0x11;
const NFT_MSG_NEWTABLE = 0;
const NFT_MSG_DELTABLE = 2;
const NFT_MSG_NEWCHAIN = 3;
const NFT_MSG_GETGEN = 16;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_CREATE = 0x400;
const NLMSG_ERROR = 2;
const NLA_F_NESTED = 0x8000;
const NFTA_TABLE_NAME = 1;
const NFTA_CHAIN_TABLE = 1;
const NFTA_CHAIN_NAME = 3;
const NFTA_CHAIN_HOOK = 4;
const NFTA_CHAIN_POLICY = 5;
const NFTA_CHAIN_TYPE = 7;
const NFTA_HOOK_HOOKNUM = 1;
const NFTA_HOOK_PRIORITY = 2;
const NFPROTO_INET = 1;
const NF_INET_LOCAL_IN = 1;
const NF_INET_LOCAL_OUT = 3;
const NF_DROP = 0;
const ENOENT = 2;

/** A chain that drops every packet at a hook, before anything else sees it. */
export interface DropChain {
  name: string;
  hook: "input" | "output";
  priority: number;
}

/** An attribute: length, type, payload, padded to 4 bytes. */
function attr(type: number, payload: Uint8Array): Uint8Array {
  const a = new Uint8Array((4 + payload.length + 3) & ~3);
  const v = new DataView(a.buffer);
  v.setUint16(0, 4 + payload.length, true);
  v.setUint16(2, type, true);
  a.set(payload, 4);
  return a;
}

function str(s: string): Uint8Array {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(s)) throw new Error(`Invalid nftables name "${s}"`);
  return new TextEncoder().encode(`${s}\0`);
}

/** nf_tables takes its numbers in network byte order. */
function be32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, n, false);
  return b;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** One netlink message: header, nfgenmsg (family, version 0, res_id), attributes. */
function message(type: number, flags: number, seq: number, family: number, resId: number, attrs: Uint8Array[]): Uint8Array {
  const body = concat(attrs);
  const m = new Uint8Array(20 + body.length);
  const v = new DataView(m.buffer);
  v.setUint32(0, m.length, true);
  v.setUint16(4, type, true);
  v.setUint16(6, flags, true);
  v.setUint32(8, seq, true);
  m[16] = family;
  v.setUint16(18, resId, false);
  m.set(body, 20);
  return m;
}

function nftMessage(msg: number, flags: number, seq: number, attrs: Uint8Array[]): Uint8Array {
  return message((NFNL_SUBSYS_NFTABLES << 8) | msg, NLM_F_REQUEST | NLM_F_ACK | flags, seq, NFPROTO_INET, 0, attrs);
}

/**
 * A transaction (the kernel applies all of it or nothing): batch begin, the
 * messages (sequence numbers from `seq`), batch end. Returns the bytes and the
 * sequence numbers that are answered.
 */
export function nftBatch(seq: number, build: ReadonlyArray<(seq: number) => Uint8Array>): { bytes: Uint8Array; seqs: number[] } {
  const seqs = build.map((_, i) => seq + 1 + i);
  const begin = message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, 0, NFNL_SUBSYS_NFTABLES, []);
  const end = message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq + build.length + 1, 0, NFNL_SUBSYS_NFTABLES, []);
  return { bytes: concat([begin, ...build.map((b, i) => b(seqs[i]!)), end]), seqs };
}

/** `table inet NAME { chain C { type filter hook H priority P; policy drop; } ... }` (made, or left as it is). */
export function addDropTable(table: string, chains: readonly DropChain[]): Array<(seq: number) => Uint8Array> {
  return [
    (seq) => nftMessage(NFT_MSG_NEWTABLE, NLM_F_CREATE, seq, [attr(NFTA_TABLE_NAME, str(table))]),
    ...chains.map((c) => (seq: number) => {
      const hook = concat([
        attr(NFTA_HOOK_HOOKNUM, be32(c.hook === "input" ? NF_INET_LOCAL_IN : NF_INET_LOCAL_OUT)),
        attr(NFTA_HOOK_PRIORITY, be32(c.priority)),
      ]);
      return nftMessage(NFT_MSG_NEWCHAIN, NLM_F_CREATE, seq, [
        attr(NFTA_CHAIN_TABLE, str(table)),
        attr(NFTA_CHAIN_NAME, str(c.name)),
        attr(NFTA_CHAIN_HOOK | NLA_F_NESTED, hook),
        attr(NFTA_CHAIN_POLICY, be32(NF_DROP)),
        attr(NFTA_CHAIN_TYPE, str("filter")),
      ]);
    }),
  ];
}

/** `delete table inet NAME`. */
export function deleteTable(table: string): Array<(seq: number) => Uint8Array> {
  return [(seq) => nftMessage(NFT_MSG_DELTABLE, 0, seq, [attr(NFTA_TABLE_NAME, str(table))])];
}

/** The errno (positive) each answered sequence number carries: 0 for an ACK. */
export function answers(replies: readonly Uint8Array[]): Map<number, number> {
  const out = new Map<number, number>();
  for (const r of replies) {
    const v = new DataView(r.buffer, r.byteOffset, r.byteLength);
    if (r.length >= 20 && v.getUint16(4, true) === NLMSG_ERROR) out.set(v.getUint32(8, true), -v.getInt32(16, true) || 0);
  }
  return out;
}

let nextSeq = 1;

function strerror(errno: number): string {
  return `${errnoText(errno)} (errno ${errno})`;
}

/**
 * Send a batch in the net namespace at `netnsPath` (null: the agent's own);
 * returns the first error other than `ignore`'s, or null.
 */
export function sendNftBatch(netnsPath: string | null, build: ReadonlyArray<(seq: number) => Uint8Array>, ignore: readonly number[] = []): string | null {
  const seq = nextSeq;
  nextSeq = (nextSeq + build.length + 2) % 0x7fff_0000;
  const { bytes, seqs } = nftBatch(seq, build);
  const got = answers(netlinkExchange(netnsPath, NETLINK_NETFILTER, bytes, seqs));
  for (const s of seqs) {
    const errno = got.get(s) ?? 0;
    if (errno !== 0 && !ignore.includes(errno)) return strerror(errno);
  }
  return null;
}

/** Add the drop-everything table to a net namespace (nothing changes if it is there). Throws with the kernel's reason. */
export function addDropTableIn(netnsPath: string, table: string, chains: readonly DropChain[]): void {
  const why = sendNftBatch(netnsPath, addDropTable(table, chains));
  if (why !== null) throw new Error(`nf_tables refused table inet ${table}: ${why}`);
}

/** Remove a table from a net namespace; one that is not there is fine. Throws with the kernel's reason otherwise. */
export function deleteTableIn(netnsPath: string, table: string): void {
  const why = sendNftBatch(netnsPath, deleteTable(table), [ENOENT]);
  if (why !== null) throw new Error(`nf_tables refused to delete table inet ${table}: ${why}`);
}

/**
 * Why this kernel has no nf_tables, or null: asks it for the rule set's
 * generation, in the agent's own net namespace (the kernel loads the module
 * on demand when it has one, as for `nft list tables`).
 */
export function whyNoNfTables(): string | null {
  const seq = nextSeq++;
  try {
    const req = message((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN, NLM_F_REQUEST | NLM_F_ACK, seq, 0, 0, []);
    const errno = answers(netlinkExchange(null, NETLINK_NETFILTER, req, [seq])).get(seq) ?? 0;
    return errno === 0 ? null : `nf_tables answered ${strerror(errno)}`;
  } catch (e) {
    return (e as Error).message;
  }
}
