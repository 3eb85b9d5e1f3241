import { describe, expect, test } from "bun:test";
import { HashTable } from "./hash-table.ts";
import { sha256 } from "./hash.ts";

describe("HashTable", () => {
  test("adds, finds and keeps locations of hashes at any offset; duplicates are found, not added", () => {
    const n = 5000;
    const all = new Uint8Array(n * 32 + 7);
    for (let i = 0; i < n; i++) all.set(sha256(new TextEncoder().encode(`chunk ${i}`)), 7 + i * 32);
    const t = new HashTable(16); // grows many times
    for (let i = 0; i < n; i++) expect(t.add(all, 7 + i * 32, i % 3, i * 4096, 4096 - i).added).toBe(true);
    expect(t.size).toBe(n);
    for (let i = 0; i < n; i += 7) {
      const idx = t.indexOf(all, 7 + i * 32);
      expect(idx).toBe(i);
      expect(t.locationAt(idx)).toEqual({ pack: i % 3, offset: i * 4096, length: 4096 - i });
      expect(Buffer.compare(t.hashAt(idx), all.subarray(7 + i * 32, 7 + i * 32 + 32))).toBe(0);
    }
    const again = t.add(all, 7 + 10 * 32, 99, 99, 99);
    expect(again).toEqual({ index: 10, added: false });
    expect(t.locationAt(10).pack).toBe(1);
    expect(t.has(sha256(new TextEncoder().encode("absent")))).toBe(false);
    expect([...t.hashes()].length).toBe(n);
    expect(t.columns().size).toBe(n);
    t.clear();
    expect(t.size).toBe(0);
    expect(t.has(all, 7)).toBe(false);
  });

  test("reserve makes room once; entries stay findable", () => {
    const t = new HashTable(4);
    const a = sha256(new Uint8Array([1]));
    t.add(a, 0, 1, 2, 3);
    t.reserve(100_000);
    expect(t.indexOf(a)).toBe(0);
    for (let i = 0; i < 1000; i++) t.add(sha256(new Uint8Array([i & 255, i >> 8, 7])));
    expect(t.size).toBe(1001);
    expect(t.locationAt(0)).toEqual({ pack: 1, offset: 2, length: 3 });
  });
});
