/**
 * A pod's network locks through nf_tables' netlink interface, without an
 * `nsenter ... nft` process: the lock before a dump and its lifting after a
 * restore fall in a migration's freeze, where each process start cost
 * milliseconds. The same table and chains as netlock.ts's ruleset, in one
 * transaction (a batch): `table inet NAME`, chains input and output hooked at
 * priority -1000 with policy drop. The messages are built and parsed here as
 * bytes (table tests beside this file); the socket is libc.ts's.
 */
import { Errno, netlinkExchange } from "./libc.ts";
import { attr, concat } from "./netlink.ts";

const NETLINK_NETFILTER = 12;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const NLM_F_REQUEST = 0x1;
const NLM_F_MULTI = 0x2;
const NLM_F_ACK = 0x4;
const NLM_F_DUMP = 0x300;
const NLM_F_CREATE = 0x400;
const NFNL_SUBSYS_NFTABLES = 10;
const NFNL_MSG_BATCH_BEGIN = 16;
const NFNL_MSG_BATCH_END = 17;
const NFT_MSG_NEWTABLE = 0;
const NFT_MSG_GETTABLE = 1;
const NFT_MSG_DELTABLE = 2;
const NFT_MSG_NEWCHAIN = 3;
const NFTA_TABLE_NAME = 1;
const NFTA_CHAIN_TABLE = 1;
const NFTA_CHAIN_NAME = 3;
const NFTA_CHAIN_HOOK = 4;
const NFTA_CHAIN_POLICY = 5;
const NFTA_CHAIN_TYPE = 7;
const NFTA_HOOK_HOOKNUM = 1;
const NFTA_HOOK_PRIORITY = 2;
const NLA_F_NESTED = 0x8000;
const NF_INET_LOCAL_IN = 1;
const NF_INET_LOCAL_OUT = 3;
const NF_DROP = 0;
const ENOENT = 2;
const RECV_TIMEOUT_MS = 5000;

/** nf_tables' families by number, as nft names them. */
export const FAMILIES: Record<number, string> = { 1: "inet", 2: "ip", 3: "arp", 5: "netdev", 7: "bridge", 10: "ip6" };
const FAMILY_NUMBERS = Object.fromEntries(Object.entries(FAMILIES).map(([n, name]) => [name, Number(n)])) as Record<string, number>;

const str = (type: number, s: string) => attr(type, new TextEncoder().encode(`${s}\0`));
const u32be = (type: number, n: number) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0, false);
  return attr(type, b);
};

/** One netlink message of nfnetlink: header, nfgenmsg (family, version 0, resource id), attributes. */
function message(type: number, flags: number, seq: number, family: number, attrs: readonly Uint8Array[], resId = 0): Uint8Array {
  const body = concat(attrs);
  const m = new Uint8Array(16 + 4 + body.length);
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

const nftType = (msg: number) => (NFNL_SUBSYS_NFTABLES << 8) | msg;

/** A transaction: begin, the messages (each acknowledged), end. Sequence numbers from `seq`. */
function batch(seq: number, make: (seq: number) => Uint8Array[]): { bytes: Uint8Array; acked: number[] } {
  const inner = make(seq + 1);
  const acked = inner.map((_, i) => seq + 1 + i);
  const begin = message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, 0, [], NFNL_SUBSYS_NFTABLES);
  const end = message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq + 1 + inner.length, 0, [], NFNL_SUBSYS_NFTABLES);
  return { bytes: concat([begin, ...inner, end]), acked };
}

/** The batch that makes table inet `table` with chains input and output dropping everything (netlock.ts's RULESET). */
export function lockBatch(table: string, seq: number): { bytes: Uint8Array; acked: number[] } {
  const flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK;
  const inet = FAMILY_NUMBERS.inet!;
  const chain = (s: number, name: string, hook: number) =>
    message(nftType(NFT_MSG_NEWCHAIN), flags, s, inet, [
      str(NFTA_CHAIN_TABLE, table),
      str(NFTA_CHAIN_NAME, name),
      attr(NFTA_CHAIN_HOOK | NLA_F_NESTED, concat([u32be(NFTA_HOOK_HOOKNUM, hook), u32be(NFTA_HOOK_PRIORITY, -1000)])),
      u32be(NFTA_CHAIN_POLICY, NF_DROP),
      str(NFTA_CHAIN_TYPE, "filter"),
    ]);
  return batch(seq, (s) => [
    message(nftType(NFT_MSG_NEWTABLE), flags, s, inet, [str(NFTA_TABLE_NAME, table)]),
    chain(s + 1, "input", NF_INET_LOCAL_IN),
    chain(s + 2, "output", NF_INET_LOCAL_OUT),
  ]);
}

/** The batch that deletes these tables (with everything in them). */
export function deleteBatch(tables: ReadonlyArray<{ family: string; name: string }>, seq: number): { bytes: Uint8Array; acked: number[] } {
  return batch(seq, (s) =>
    tables.map((t, i) => {
      const family = FAMILY_NUMBERS[t.family];
      if (family === undefined) throw new Error(`Unknown nftables family "${t.family}"`);
      return message(nftType(NFT_MSG_DELTABLE), NLM_F_REQUEST | NLM_F_ACK, s + i, family, [str(NFTA_TABLE_NAME, t.name)]);
    }),
  );
}

/** The request that lists every table (a dump). */
export function listTablesRequest(seq: number): Uint8Array {
  return message(nftType(NFT_MSG_GETTABLE), NLM_F_REQUEST | NLM_F_DUMP, seq, 0, []);
}

/** What one datagram from the kernel says: acknowledgements and errors by sequence number, tables listed, whether a dump ended. */
export interface Answer {
  acks: Array<{ seq: number; errno: number }>;
  tables: Array<{ family: string; name: string }>;
  isDone: boolean;
}

export function parseAnswer(buf: Uint8Array): Answer {
  const out: Answer = { acks: [], tables: [], isDone: false };
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let at = 0;
  while (at + 16 <= buf.length) {
    const len = v.getUint32(at, true);
    if (len < 16 || at + len > buf.length) throw new Error(`netlink: a message of ${len} bytes at ${at} of ${buf.length}`);
    const type = v.getUint16(at + 4, true);
    const flags = v.getUint16(at + 6, true);
    if (type === NLMSG_ERROR) {
      if (len < 20 + 16) throw new Error("netlink: a short error message");
      // struct nlmsgerr: error (negative errno, 0 = ack), then the request's header
      const error = v.getInt32(at + 16, true);
      out.acks.push({ errno: error === 0 ? 0 : -error, seq: v.getUint32(at + 20 + 8, true) });
    } else if (type === NLMSG_DONE) {
      out.isDone = true;
    } else if (type === nftType(NFT_MSG_NEWTABLE) && len >= 20) {
      const family = FAMILIES[buf[at + 16]!] ?? String(buf[at + 16]);
      let a = at + 20;
      while (a + 4 <= at + len) {
        const alen = v.getUint16(a, true);
        if (alen < 4) break;
        if ((v.getUint16(a + 2, true) & ~NLA_F_NESTED) === NFTA_TABLE_NAME) {
          const raw = buf.subarray(a + 4, a + alen);
          const nul = raw.indexOf(0);
          out.tables.push({ family, name: new TextDecoder().decode(nul >= 0 ? raw.subarray(0, nul) : raw) });
        }
        a += (alen + 3) & ~3;
      }
      if (!(flags & NLM_F_MULTI)) out.isDone = true;
    }
    at += (len + 3) & ~3;
  }
  return out;
}

let nextSeq = Math.floor(Math.random() * 0x7fff0000);
function seqs(n: number): number {
  const s = nextSeq;
  nextSeq = (nextSeq + n) % 0x7fff0000;
  return s;
}

/** Send a batch; returns once every message is acknowledged. `ignore`: errnos that count as done (ENOENT for a delete). */
function transact(netnsPath: string, b: { bytes: Uint8Array; acked: number[] }, what: string, ignore: readonly number[] = []): void {
  if (b.acked.length === 0) return;
  const answers = netlinkExchange(netnsPath, NETLINK_NETFILTER, b.bytes, b.acked, RECV_TIMEOUT_MS, true);
  for (const m of answers) {
    // An error for the batch's begin or end (not acknowledged otherwise) fails it all.
    for (const a of parseAnswer(m).acks) if (a.errno !== 0 && !ignore.includes(a.errno)) throw new Errno(`nftables: ${what}`, a.errno, netnsPath);
  }
}

/** Drop every packet in and out of the net namespace: table inet `table`, as netlock.ts's ruleset. */
export function lockNetworkNetlink(netnsPath: string, table: string): void {
  transact(netnsPath, lockBatch(table, seqs(5)), `lock the network (table inet ${table})`);
}

/** Delete these tables; one already gone is no error. */
export function deleteTablesNetlink(netnsPath: string, tables: ReadonlyArray<{ family: string; name: string }>): void {
  transact(netnsPath, deleteBatch(tables, seqs(tables.length + 2)), `delete ${tables.map((t) => `${t.family} ${t.name}`).join(", ")}`, [ENOENT]);
}

/** Every nftables table of the net namespace. */
export function listTablesNetlink(netnsPath: string): Array<{ family: string; name: string }> {
  const seq = seqs(1);
  const tables: Array<{ family: string; name: string }> = [];
  for (const m of netlinkExchange(netnsPath, NETLINK_NETFILTER, listTablesRequest(seq), [seq], RECV_TIMEOUT_MS, true)) {
    const a = parseAnswer(m);
    const failed = a.acks.find((x) => x.errno !== 0);
    if (failed) throw new Errno("nftables: list tables", failed.errno, netnsPath);
    tables.push(...a.tables);
  }
  return tables;
}
