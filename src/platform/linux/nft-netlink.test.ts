import { describe, expect, test } from "bun:test";
import { lockNetwork, unlockNetwork } from "./netlock.ts";
import { addDropTable, answers, deleteTable, nftBatch, whyNoNfTables } from "./nft-netlink.ts";

const isRoot = process.getuid?.() === 0;

interface Msg {
  type: number;
  flags: number;
  seq: number;
  family: number;
  resId: number;
  attrs: Map<number, Uint8Array>;
}

/** Split a batch into its messages, and each message's attributes by type (the nested flag kept). */
function parse(bytes: Uint8Array): Msg[] {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Msg[] = [];
  for (let at = 0; at < bytes.length; ) {
    const len = v.getUint32(at, true);
    const attrs = new Map<number, Uint8Array>();
    for (let a = at + 20; a < at + len; ) {
      const alen = v.getUint16(a, true);
      attrs.set(v.getUint16(a + 2, true), bytes.subarray(a + 4, a + alen));
      a += (alen + 3) & ~3;
    }
    out.push({
      type: v.getUint16(at + 4, true),
      flags: v.getUint16(at + 6, true),
      seq: v.getUint32(at + 8, true),
      family: bytes[at + 16]!,
      resId: v.getUint16(at + 18, false),
      attrs,
    });
    expect(len % 4).toBe(0);
    at += len;
  }
  return out;
}

const text = (b: Uint8Array | undefined) => new TextDecoder().decode(b);
const be32 = (b: Uint8Array | undefined) => new DataView(b!.buffer, b!.byteOffset, 4).getInt32(0, false);

describe("nftBatch", () => {
  test("the lock: a table and two drop chains at priority -1000, between batch begin and end, as nft -f sends them", () => {
    const { bytes, seqs } = nftBatch(
      7,
      addDropTable("autopod-lock", [
        { name: "input", hook: "input", priority: -1000 },
        { name: "output", hook: "output", priority: -1000 },
      ]),
    );
    const [begin, table, input, output, end, ...rest] = parse(bytes);
    expect(rest).toEqual([]);
    expect(seqs).toEqual([8, 9, 10]);
    expect([begin!.type, begin!.seq, begin!.resId, end!.type, end!.seq, end!.resId]).toEqual([0x10, 7, 10, 0x11, 11, 10]);
    // NEWTABLE and NEWCHAIN of nf_tables (subsystem 10), family inet, REQUEST|ACK|CREATE (no EXCL: a lock again is no error).
    expect([table!.type, table!.flags, table!.family, table!.seq]).toEqual([0x0a00, 0x405, 1, 8]);
    expect(text(table!.attrs.get(1))).toBe("autopod-lock\0");
    for (const [chain, name, hook] of [
      [input!, "input", 1],
      [output!, "output", 3],
    ] as const) {
      expect([chain.type, chain.flags, chain.family]).toEqual([0x0a03, 0x405, 1]);
      expect(text(chain.attrs.get(1))).toBe("autopod-lock\0");
      expect(text(chain.attrs.get(3))).toBe(`${name}\0`);
      expect(text(chain.attrs.get(7))).toBe("filter\0");
      expect(be32(chain.attrs.get(5))).toBe(0); // policy drop
      const nested = chain.attrs.get(4 | 0x8000)!;
      expect(nested.length).toBe(16);
      expect([be32(nested.subarray(4)), be32(nested.subarray(12))]).toEqual([hook, -1000]);
    }
  });

  test("the unlock: one DELTABLE", () => {
    const msgs = parse(nftBatch(100, deleteTable("autopod-lock")).bytes);
    expect(msgs.map((m) => m.type)).toEqual([0x10, 0x0a02, 0x11]);
    expect([msgs[1]!.flags, text(msgs[1]!.attrs.get(1))]).toEqual([0x5, "autopod-lock\0"]);
  });

  test("names that are not plain identifiers are refused", () => {
    expect(() => deleteTable("a b")[0]!(1)).toThrow('Invalid nftables name "a b"');
  });
});

test("answers: the errno of each NLMSG_ERROR by sequence number, 0 for an ACK", () => {
  const reply = (seq: number, error: number) => {
    const b = new Uint8Array(36);
    const v = new DataView(b.buffer);
    v.setUint32(0, 36, true);
    v.setUint16(4, 2, true);
    v.setUint32(8, seq, true);
    v.setInt32(16, error, true);
    return b;
  };
  expect([...answers([reply(3, 0), reply(4, -2)])]).toEqual([
    [3, 0],
    [4, 2],
  ]);
});

test.skipIf(!isRoot)("a real net namespace locked and unlocked over netlink, as nft shows it (needs root)", async () => {
  const ns = `aptest-nft-${process.pid}`;
  const sh = (argv: string[]) => {
    const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
    return { code: r.exitCode, out: r.stdout.toString() };
  };
  expect(sh(["ip", "netns", "add", ns]).code).toBe(0);
  try {
    const path = `/run/netns/${ns}`;
    expect(whyNoNfTables()).toBeNull();
    await lockNetwork(path);
    await lockNetwork(path); // again: no error, one table
    const ruleset = sh(["ip", "netns", "exec", ns, "nft", "list", "ruleset"]).out;
    expect(ruleset.match(/table inet autopod-lock/g)?.length).toBe(1);
    expect(ruleset).toContain("type filter hook input priority -1000; policy drop;");
    expect(ruleset).toContain("type filter hook output priority -1000; policy drop;");
    await unlockNetwork(path);
    expect(sh(["ip", "netns", "exec", ns, "nft", "list", "tables"]).out.trim()).toBe("");
    await unlockNetwork(path); // nothing to lift: fine
    await expect(lockNetwork(`/run/netns/${ns}-none`)).rejects.toThrow(`Cannot lock the network of /run/netns/${ns}-none`);
  } finally {
    sh(["ip", "netns", "del", ns]);
  }
});
