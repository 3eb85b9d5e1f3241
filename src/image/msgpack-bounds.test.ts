import { describe, expect, test } from "bun:test";
import { Packr } from "msgpackr";
import { sampleManifest } from "./testing.ts";
import { decodeManifest, encodeManifest, InvalidManifestError, LIMITS } from "./manifest.ts";
import { msgpackShape } from "./msgpack-bounds.ts";

const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true });
const WIDE = { maxContainers: 1e9, maxValues: 1e12, maxDepth: 64, maxLength: 2 ** 33 };

/** A msgpack array header claiming `n` items (array 32), followed by `body`. */
function array32(n: number, body: Uint8Array): Uint8Array {
  const b = new Uint8Array(5 + body.byteLength);
  b[0] = 0xdd;
  new DataView(b.buffer).setUint32(1, n);
  b.set(body, 5);
  return b;
}

describe("msgpackShape", () => {
  test("counts what msgpackr would build, for every type a manifest uses", () => {
    const value = {
      a: [1, -1, 300, -300, 70000, 2 ** 40, -(2 ** 40), 1.5, "x".repeat(40), "y".repeat(300), "z".repeat(70000)],
      b: new Uint8Array(70000),
      c: null,
      d: true,
      e: {},
    };
    const r = msgpackShape(packr.pack(value), WIDE);
    expect(r).toEqual({ containers: 3, values: 1 + 10 + 11 });
    const m = encodeManifest(sampleManifest());
    expect("problem" in msgpackShape(m, WIDE)).toBe(false);
  });

  test("refuses truncation, trailing bytes, unknown types and lying lengths", () => {
    const b = packr.pack({ a: "hello", b: [1, 2, 3] });
    expect(msgpackShape(b.subarray(0, b.byteLength - 1), WIDE)).toEqual({ problem: "a container claims 3 values but only 2 bytes follow" });
    expect(msgpackShape(new Uint8Array([0xa5, 0x68]), WIDE)).toEqual({ problem: "a value claims 5 bytes but only 1 follow" });
    expect(msgpackShape(new Uint8Array([...b, 0]), WIDE)).toEqual({ problem: "1 bytes follow the value" });
    expect(msgpackShape(new Uint8Array([0xc1]), WIDE)).toEqual({ problem: "byte 0 is not a msgpack type (0xc1)" });
    expect(msgpackShape(array32(0xffff_ffff, new Uint8Array(10)), WIDE)).toEqual({ problem: "a container claims 4294967295 values but only 10 bytes follow" });
    expect(msgpackShape(new Uint8Array([0xdb, 0xff, 0xff, 0xff, 0xff, 1]), WIDE)).toEqual({
      problem: expect.stringContaining("a value claims 4294967295 bytes"),
    });
  });

  test("refuses a list over the limit at its header, and depth and totals over theirs", () => {
    expect(msgpackShape(array32(11, new Uint8Array(11)), { ...WIDE, maxLength: 10 })).toEqual({ problem: "a list of 11 items is over the limit of 10" });
    const deep = packr.pack([[[[[1]]]]]);
    expect(msgpackShape(deep, { ...WIDE, maxDepth: 3 })).toEqual({ problem: "it nests deeper than 3" });
    expect(msgpackShape(packr.pack([[], [], []]), { ...WIDE, maxContainers: 3 })).toEqual({ problem: "it holds more than 3 maps and arrays" });
    expect(msgpackShape(packr.pack([1, 2, 3]), { ...WIDE, maxValues: 3 })).toEqual({ problem: "it holds more than 3 values" });
  });
});

describe("decodeManifest bounds", () => {
  test("a manifest of 2,000,000 entries is refused by its shape, quickly and without building them", () => {
    // The red team's manifest: 2M small entries (about 90 bytes each) in one section.
    const entry = packr.pack({ path: "f", type: "file", mode: 420, uid: 0, gid: 0, mtimeMs: 1, size: 1, chunkSize: 4096, chunks: new Uint8Array(32) });
    const n = 2_000_000;
    const entries = new Uint8Array(entry.byteLength * n);
    for (let i = 0; i < n; i++) entries.set(entry, i * entry.byteLength);
    // {format: 1, rootfs: [2M entries]}: a fixmap of 2 built by hand around the packed pieces.
    const head = new Uint8Array([0x82, ...packr.pack("format"), 1, ...packr.pack("rootfs")]);
    const bytes = new Uint8Array(head.byteLength + 5 + entries.byteLength);
    bytes.set(head);
    bytes.set(array32(n, entries), head.byteLength);
    expect(bytes.byteLength).toBeGreaterThan(150e6);
    Bun.gc(true);
    const rss0 = process.memoryUsage().rss;
    const t0 = performance.now();
    let err: unknown;
    try {
      decodeManifest(bytes);
    } catch (e) {
      err = e;
    }
    const ms = performance.now() - t0;
    expect(err).toBeInstanceOf(InvalidManifestError);
    expect((err as Error).message).toBe(`Invalid manifest: a list of ${n} items is over the limit of ${LIMITS.entries}`);
    expect(ms).toBeLessThan(100);
    expect(process.memoryUsage().rss - rss0).toBeLessThan(50e6);
  });
});

describe("msgpackShape of a prefix", () => {
  test("running out of bytes is fine, a list over the limit is still refused", () => {
    const b = packr.pack({ a: "hello", b: [1, 2, 3], c: new Uint8Array(100) });
    for (let n = 1; n < b.byteLength; n++) expect("problem" in msgpackShape(b.subarray(0, n), WIDE, { isPrefix: true })).toBe(false);
    expect(msgpackShape(array32(2_000_000, new Uint8Array(10)), { ...WIDE, maxLength: 1_000_000 }, { isPrefix: true })).toEqual({
      problem: "a list of 2000000 items is over the limit of 1000000",
    });
  });
});
