import { describe, expect, test } from "bun:test";
import { deleteBatch, listTablesRequest, lockBatch, parseAnswer } from "./nft-netlink.ts";

/** The messages of a batch: [type, flags, seq, family] of each. */
function headers(b: Uint8Array): Array<[number, number, number, number]> {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out: Array<[number, number, number, number]> = [];
  for (let at = 0; at < b.length; at += v.getUint32(at, true))
    out.push([v.getUint16(at + 4, true), v.getUint16(at + 6, true), v.getUint32(at + 8, true), b[at + 16]!]);
  return out;
}

describe("nf_tables netlink messages", () => {
  test("the lock: begin, table, two chains (each acknowledged), end, in sequence", () => {
    const b = lockBatch("autopod-lock", 100);
    expect(headers(b.bytes)).toEqual([
      [16, 1, 100, 0],
      [0xa00, 0x405, 101, 1],
      [0xa03, 0x405, 102, 1],
      [0xa03, 0x405, 103, 1],
      [17, 1, 104, 0],
    ]);
    expect(b.acked).toEqual([101, 102, 103]);
    const text = new TextDecoder().decode(b.bytes);
    for (const s of ["autopod-lock\0", "input\0", "output\0", "filter\0"]) expect(text).toContain(s);
  });

  test("a delete names each table's family; an unknown family is refused", () => {
    const b = deleteBatch(
      [
        { family: "inet", name: "CRIU-1" },
        { family: "ip6", name: "CRIU-2" },
      ],
      7,
    );
    expect(headers(b.bytes).map(([type, , seq, family]) => [type, seq, family])).toEqual([
      [16, 7, 0],
      [0xa02, 8, 1],
      [0xa02, 9, 10],
      [17, 10, 0],
    ]);
    expect(() => deleteBatch([{ family: "x", name: "t" }], 1)).toThrow('Unknown nftables family "x"');
  });

  test("answers: an ack, an error, a listed table, the end of a dump", () => {
    const msg = (type: number, flags: number, body: number[]) => {
      const m = new Uint8Array(16 + body.length);
      const v = new DataView(m.buffer);
      v.setUint32(0, m.length, true);
      v.setUint16(4, type, true);
      v.setUint16(6, flags, true);
      m.set(body, 16);
      return [...m];
    };
    const err = (errno: number, seq: number) => {
      const b = new Uint8Array(20);
      new DataView(b.buffer).setInt32(0, -errno, true);
      new DataView(b.buffer).setUint32(4 + 8, seq, true);
      return msg(2, 0, [...b]);
    };
    // NEWTABLE, family ip (2), NFTA_TABLE_NAME "CRIU-9" (6 bytes + NUL, padded to 8)
    const table = msg(0xa00, 2, [2, 0, 0, 0, 11, 0, 1, 0, ...new TextEncoder().encode("CRIU-9\0"), 0]);
    const a = parseAnswer(new Uint8Array([...err(0, 5), ...err(2, 6), ...table, ...msg(3, 2, [0, 0, 0, 0])]));
    expect(a.acks).toEqual([
      { errno: 0, seq: 5 },
      { errno: 2, seq: 6 },
    ]);
    expect(a.tables).toEqual([{ family: "ip", name: "CRIU-9" }]);
    expect(a.isDone).toBe(true);
    expect(listTablesRequest(3).length).toBe(20);
  });

  test("a message whose length runs past the datagram is refused", () => {
    const b = new Uint8Array(16);
    new DataView(b.buffer).setUint32(0, 64, true);
    expect(() => parseAnswer(b)).toThrow("netlink: a message of 64 bytes");
  });
});
